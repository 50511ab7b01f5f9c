"""A second hunt in today's features (a reply's stored parameters reused by a regeneration,
reasoning, provider refusals) where they meet older ones: forks, imports, presets, edits,
stopped and failed replies, shared projects, the official ``openai`` SDK on /v1, the SSE
framing of the reasoning. Real app, Postgres, Redis and S3; providers are fakes on loopback.
Kept as a regression suite: three of these tests found defects (a fallback's reply kept the
effort it was not asked with, so it could not be regenerated; one stop sequence with NUL
dropped the others from the stored parameters; the sweeper failed a reply whose reasoning
model was thinking in silence), all fixed since."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.http.test_chat_regenerate import messages
from tests.integration.http.test_new_features_hunt import _extracted_file, _import, _plan
from tests.integration.http.test_reasoning_files_hunt import (
    Events,
    fail_the_reasoner,
    named,
    xai_chat,  # noqa: F401  (a fixture)
)
from tests.support.fake_providers import (
    DELTAS,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    openai_chunk,
    openai_default,
    openai_error,
    openai_stream,
    sse,
)
from tests.support.fake_reasoning import THOUGHTS, openai_reasoning_stream
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls

MODEL = "openai/gpt-4o-mini"
REASONER = "openai/o4-mini"  # pro; falls back to gpt-4o-mini
GROK_MINI = "xai/grok-3-mini"  # free, reasons; falls back to gpt-4o-mini


async def regenerate(chat: Chat, auth: dict[str, str], **body: Any) -> Events:
    again = await chat.client.post("/api/chat/regenerate", json=body, headers=auth)
    assert again.status_code == 201, again.text
    return await chat.events(again.json()["sessionId"])


def last_sent(chat: Chat) -> dict[str, Any]:
    body: dict[str, Any] = chat.provider.requests[-1].body
    return body


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("temperature", "max_completion_tokens", "max_tokens", "top_p", "stop", "seed")
    keys += ("presence_penalty", "frequency_penalty", "reasoning_effort")
    return {k: body[k] for k in keys if k in body}


# === regeneration and the stored parameters =====================================================
async def test_a_reply_a_fallback_answered_for_a_reasoning_request_can_be_regenerated(
    xai_chat: Chat,  # noqa: F811  (the imported fixture)
) -> None:
    chat = xai_chat
    alice = await chat.world.register("alice")
    chat.provider.script(*[fail_the_reasoner("grok-3-mini")] * 4)
    started = await chat.start(
        alice["auth"], model=GROK_MINI, message=f"Think {uuid.uuid4()}",
        params={"reasoningEffort": "high", "temperature": 0.4},
    )  # fmt: skip
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert reply["model"] == MODEL  # the fallback answered
    # "Regenerate" on that reply: nothing in the request
    again = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=alice["auth"]
    )
    assert again.status_code == 201, again.text
    await chat.events(again.json()["sessionId"])
    assert "reasoning_effort" not in last_sent(chat)


async def test_a_request_then_a_preset_then_the_stored_parameters_in_that_order(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}",
        params={"temperature": 0.3, "maxTokens": 50, "seed": 7},
    )  # fmt: skip
    await chat.events(started["sessionId"])
    preset = await chat.client.post(
        "/api/presets", headers=alice["auth"],
        json={"name": "P", "model": MODEL, "params": {"temperature": 0.9, "topP": 0.5}},
    )  # fmt: skip
    assert preset.status_code == 201, preset.text
    await regenerate(
        chat, alice["auth"], chatId=started["chatId"], presetId=preset.json()["id"],
        params={"seed": 9},
    )  # fmt: skip
    assert sampling(last_sent(chat)) == {
        "temperature": 0.9, "top_p": 0.5, "seed": 9, "max_completion_tokens": 50,
    }  # fmt: skip
    # and the new reply keeps what it was asked with: the next regeneration asks the same
    await regenerate(chat, alice["auth"], chatId=started["chatId"])
    assert sampling(last_sent(chat)) == {
        "temperature": 0.9, "top_p": 0.5, "seed": 9, "max_completion_tokens": 50,
    }  # fmt: skip


async def test_a_fork_regenerated_asks_as_the_original_was_asked(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}",
        params={"temperature": 0.2, "stop": ["END", "\n\n"]},
    )  # fmt: skip
    await chat.events(started["sessionId"])
    forked = await chat.client.post(
        f"/api/chats/{started['chatId']}/fork", json={}, headers=alice["auth"]
    )
    assert forked.status_code == 201, forked.text
    await regenerate(chat, alice["auth"], chatId=forked.json()["id"])
    assert sampling(last_sent(chat)) == {"temperature": 0.2, "stop": ["END", "\n\n"]}


async def test_an_edited_question_is_regenerated_with_the_replaced_replys_parameters(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}", params={"maxTokens": 12},
    )  # fmt: skip
    await chat.events(started["sessionId"])
    await regenerate(chat, alice["auth"], chatId=started["chatId"], message="Edited question")
    sent = last_sent(chat)
    assert sent["messages"][-1] == {"role": "user", "content": "Edited question"}
    assert sampling(sent) == {"max_completion_tokens": 12}


async def test_an_imported_reply_regenerated_by_a_named_model_gets_no_parameters_then_keeps_its_own(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    doc = {
        "title": "Imported", "create_time": 1700000000.0, "update_time": 1700000100.0,
        "current_node": "b",
        "mapping": {
            "a": {"id": "a", "parent": None, "children": ["b"], "message": {
                "id": "a", "author": {"role": "user"}, "create_time": 1700000000.0,
                "content": {"content_type": "text", "parts": ["Imported question"]},
            }},
            "b": {"id": "b", "parent": "a", "children": [], "message": {
                "id": "b", "author": {"role": "assistant"}, "create_time": 1700000050.0,
                "content": {"content_type": "text", "parts": ["Imported answer"]},
                "metadata": {"model_slug": "gpt-4o"},
            }},
        },
    }  # fmt: skip
    chat_id = await _import(chat, alice["auth"], doc)
    await regenerate(chat, alice["auth"], chatId=chat_id, model=MODEL, params={"topP": 0.4})
    assert sampling(last_sent(chat)) == {"top_p": 0.4}
    await regenerate(chat, alice["auth"], chatId=chat_id)  # now by its own model: as asked
    assert sampling(last_sent(chat)) == {"top_p": 0.4}


async def test_a_stopped_reply_is_regenerated_with_its_parameters(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_stream()[:2], hold=True))
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}", params={"seed": 42},
    )  # fmt: skip
    await chat.events(started["sessionId"], limit=1)
    stop = await chat.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=alice["auth"]
    )
    assert stop.status_code in (200, 202, 204), stop.text
    await chat.events(started["sessionId"])
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert reply["status"] == "aborted"
    await regenerate(chat, alice["auth"], chatId=started["chatId"])
    assert sampling(last_sent(chat)) == {"seed": 42}


async def test_a_stop_sequence_holding_nul_leaves_the_other_stops_to_the_regeneration(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}",
        params={"stop": ["END", "a\u0000b"], "temperature": 0.1},
    )  # fmt: skip
    await chat.events(started["sessionId"])
    assert last_sent(chat)["stop"] == ["END", "a\u0000b"]
    # the reply is stored whole (its parameters without the NUL stop), not failed at its save
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert (reply["status"], reply["content"]) == ("complete", "".join(DELTAS))
    await regenerate(chat, alice["auth"], chatId=started["chatId"])
    # the NUL one cannot be stored (Postgres); "END" can, and was asked for
    assert sampling(last_sent(chat)) == {"temperature": 0.1, "stop": ["END"]}


async def test_the_parameters_of_one_chat_never_reach_a_regeneration_in_another(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    one = await chat.start(
        alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}", params={"temperature": 1.5},
    )  # fmt: skip
    await chat.events(one["sessionId"])
    theirs = await chat.start(bob["auth"], model=MODEL, message=f"Q {uuid.uuid4()}")
    await chat.events(theirs["sessionId"])
    mine = await chat.start(alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}")
    await chat.events(mine["sessionId"])
    await regenerate(chat, bob["auth"], chatId=theirs["chatId"])
    assert sampling(last_sent(chat)) == {}
    await regenerate(chat, alice["auth"], chatId=mine["chatId"])
    assert sampling(last_sent(chat)) == {}


async def test_an_editor_regenerating_a_team_reply_asks_as_the_owner_asked(chat: Chat) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    started = await chat.start(
        owner["auth"], model=MODEL, message=f"Q {uuid.uuid4()}", projectId=project_id,
        params={"presencePenalty": 0.5},
    )  # fmt: skip
    await chat.events(started["sessionId"])
    await regenerate(chat, editor["auth"], chatId=started["chatId"])
    assert sampling(last_sent(chat)) == {"presence_penalty": 0.5}


# === SSE framing of reasoning ====================================================================
async def raw_events(chat: Chat, session_id: str, last_event_id: str | None = None) -> Events:
    """(id, event, data) until done/error, split as the SSE spec (and EventSource) splits lines:
    only at CR, LF and CRLF (httpx's ``aiter_lines`` also splits at U+2028, which JSON does not
    escape)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    url = f"/api/chat/stream?sessionId={session_id}"
    found: Events = []
    async with chat.client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        buffer = b""
        async for piece in response.aiter_bytes():
            buffer += piece
            ended = b"event: done" in buffer or b"event: error" in buffer
            if ended and buffer.endswith(b"\n\n"):
                break
    fields: dict[str, str] = {}
    for line in re.split(r"\r\n|\r|\n", buffer.decode()):
        if line == "":
            if "data" in fields:
                data = json.loads(fields["data"])
                found.append((fields.get("id"), fields.get("event", "message"), data))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return found


TRICKY = ("line one\nline two", "\r\nafter a CRLF\r", "data: not a field\n\nid: 99", " \u2028sep")


async def test_reasoning_with_newlines_cr_and_field_names_round_trips_and_resumes(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream(TRICKY, ["a\r\nb", "\rc"])))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Frame {uuid.uuid4()}")
    everything = await raw_events(chat, started["sessionId"])
    assert named(everything, "reasoning") == list(TRICKY)
    assert named(everything, "token") == ["a\r\nb", "\rc"]
    assert everything[-1][1] == "done"
    for i in range(1, len(everything) - 1):
        rest = await raw_events(chat, started["sessionId"], everything[i - 1][0])
        assert rest == everything[i:]
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert reply["reasoning"] == "".join(TRICKY)
    assert reply["content"] == "a\r\nb\rc"


async def test_a_finished_replys_stream_answers_204_after_its_final_event(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    started = await chat.start(alice["auth"], model=MODEL, message=f"End {uuid.uuid4()}")
    everything = await chat.events(started["sessionId"])
    response = await chat.client.get(
        f"/api/chat/stream?sessionId={started['sessionId']}",
        headers={"Last-Event-ID": everything[-1][0] or ""},
    )
    assert response.status_code == 204, response.text


# === /v1 with the official SDK ===================================================================
async def sdk_for(chat: Chat, user: dict[str, Any], retries: int = 2) -> openai.AsyncOpenAI:
    created = await chat.client.post("/api/keys", json={"name": "sdk"}, headers=user["auth"])
    assert created.status_code == 201, created.text
    base_url = f"{chat.client.base_url}".rstrip("/") + "/v1"
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=created.json()["secret"], max_retries=retries
    )


async def test_the_sdk_reads_reasoning_content_whole_and_streamed_and_sends_the_effort(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    async with await sdk_for(chat, alice) as sdk:
        chat.provider.script(Reply(chunks=openai_reasoning_stream()))
        whole = await sdk.chat.completions.create(
            model=REASONER, reasoning_effort="low",
            messages=[{"role": "user", "content": f"Think {uuid.uuid4()}"}],
        )  # fmt: skip
        assert last_sent(chat)["reasoning_effort"] == "low"
        message = whole.choices[0].message
        assert message.content == "".join(DELTAS)
        assert (message.model_extra or {}).get("reasoning_content") == "".join(THOUGHTS)

        chat.provider.script(Reply(chunks=openai_reasoning_stream(TRICKY)))
        stream = await sdk.chat.completions.create(
            model=REASONER, reasoning_effort="high", stream=True,
            messages=[{"role": "user", "content": f"Think {uuid.uuid4()}"}],
        )  # fmt: skip
        thoughts, text = [], []
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            extra = (delta.model_extra or {}).get("reasoning_content")
            if extra:
                thoughts.append(extra)
            if delta.content:
                text.append(delta.content)
        assert last_sent(chat)["reasoning_effort"] == "high"
        assert thoughts == list(TRICKY)
        assert "".join(text) == "".join(DELTAS)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refusal_is_a_bad_request_error_with_the_providers_words_asked_once(
    chat: Chat, stream: bool
) -> None:
    alice = await chat.world.register("alice")
    said = "Invalid 'max_completion_tokens': integer below minimum value."
    async with await sdk_for(chat, alice, retries=2) as sdk:
        chat.provider.script(Reply(status=400, body=openai_error(said, "integer_below_min_value")))
        calls = len(chat.provider.requests)

        async def ask() -> None:
            got = await sdk.chat.completions.create(
                model=MODEL, stream=stream,  # type: ignore[call-overload]
                messages=[{"role": "user", "content": f"Refuse {uuid.uuid4()}"}],
            )  # fmt: skip
            if stream:
                async for _ in got:
                    pass

        with pytest.raises(openai.BadRequestError, match="below minimum value") as raised:
            await ask()
        assert raised.value.status_code == 400
        assert raised.value.code == "provider_rejected_request"
        assert len(chat.provider.requests) == calls + 1  # neither the SDK nor Whalli retried


async def test_the_sdk_keeps_the_reasoning_of_a_tool_call_reply_streamed(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    role = sse(openai_chunk({"role": "assistant", "content": None}))
    thinking = [sse(openai_chunk({"reasoning_content": t})) for t in THOUGHTS]
    call = {
        "index": 0, "id": "call_1", "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
    }  # fmt: skip
    pieces = [role, *thinking, sse(openai_chunk({"tool_calls": [call]}))]
    pieces += [sse(openai_chunk({}, "tool_calls")), b"data: [DONE]\n\n"]
    chat.provider.script(Reply(chunks=pieces))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    async with await sdk_for(chat, alice) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL, stream=True, tools=tools,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": f"Tool {uuid.uuid4()}"}],
        )  # fmt: skip
        thoughts, names, finish = [], [], None
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if (delta.model_extra or {}).get("reasoning_content"):
                thoughts.append(delta.model_extra["reasoning_content"])  # type: ignore[index]
            names += [c.function.name for c in delta.tool_calls or [] if c.function]
            finish = chunk.choices[0].finish_reason or finish
    assert thoughts == list(THOUGHTS)
    assert names == ["lookup"]
    assert finish == "tool_calls"


# === reasoning models' first-token timeout, and the reply sweeper ================================
def slow_reasoner(*delays: float) -> list[Any]:
    """Scripts: o4-mini answers (reasoning then text) after each of ``delays`` in turn."""

    def after(delay: float) -> Any:
        def reply(request: RecordedRequest) -> Reply:
            assert request.body["model"] == "o4-mini", request.body["model"]
            return Reply(chunks=openai_reasoning_stream(), first_delay=delay)

        return reply

    return [after(d) for d in delays]


@pytest.fixture
async def slow_chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    """Timeouts scaled down from the defaults (first token 60 s, a reasoning model's 600 s,
    the sweeper's "abandoned" 900 s: here 1, 2 and 3 s); two attempts per provider."""
    async with FakeProviderServer(openai_default()) as provider, _app(
        stack_urls, unique, provider, WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S="1",
        WHALLI_PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S="2", WHALLI_PROVIDER_IDLE_TIMEOUT_S="1",
        WHALLI_REPLY_ABANDONED_AFTER_S="3", WHALLI_CHAT_PROGRESS_EVERY_S="0.2",
    ) as chat:  # fmt: skip
        yield chat


async def test_a_reasoning_model_may_think_past_the_first_token_timeout_in_chat_and_v1(
    slow_chat: Chat,
) -> None:
    chat = slow_chat
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    chat.provider.script(*slow_reasoner(1.5))
    started = await chat.start(alice["auth"], model=REASONER, message=f"Slow {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    assert named(events, "reasoning") == list(THOUGHTS)
    assert len(chat.provider.requests) == 1  # not cut and retried at 1 s
    chat.provider.script(*slow_reasoner(1.5))
    async with await sdk_for(chat, alice, retries=0) as sdk:
        whole = await sdk.chat.completions.create(
            model=REASONER, messages=[{"role": "user", "content": f"Slow {uuid.uuid4()}"}]
        )
    assert whole.choices[0].message.content == "".join(DELTAS)
    assert len(chat.provider.requests) == 2


@pytest.fixture
async def thinking_chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    """A reasoning model may think 10 s before its first token (as a deployment raising
    WHALLI_PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S to 1200 s over the sweeper's 900 s would
    have it); checkpoints every 0.2 s; replies with no news for 2 s are "abandoned"."""
    async with FakeProviderServer(openai_default()) as provider, _app(
        stack_urls, unique, provider, WHALLI_PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S="10",
        WHALLI_REPLY_ABANDONED_AFTER_S="2", WHALLI_CHAT_PROGRESS_EVERY_S="0.2",
    ) as chat:  # fmt: skip
        yield chat


async def test_the_sweeper_leaves_alone_a_reply_whose_reasoning_model_is_still_thinking(
    thinking_chat: Chat,
) -> None:
    chat = thinking_chat
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    chat.provider.script(*slow_reasoner(3.5))
    started = await chat.start(alice["auth"], model=REASONER, message=f"Slow {uuid.uuid4()}")
    await asyncio.sleep(2.5)  # no news of the reply for longer than the sweeper's 2 s
    sweeper = await resolved(chat.world.container.services.fail_abandoned_replies())
    await sweeper.execute()  # (it may sweep other tests' abandoned replies: one database)
    meanwhile = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"  # the generation itself went on
    assert len(chat.provider.requests) == 1
    assert meanwhile["status"] in ("pending", "streaming")  # not "failed" under its writer
    assert meanwhile["error"] is None


# === earlier files in a shared project ===========================================================
async def test_a_members_earlier_file_stays_in_a_team_chats_context_after_they_leave(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    file_id = await _extracted_file(chat, editor, project_id, "the team budget is 42")
    started = await chat.start(
        editor["auth"], model=MODEL, message=f"Read {uuid.uuid4()}", projectId=project_id,
        attachmentIds=[file_id],
    )  # fmt: skip
    await chat.events(started["sessionId"])
    member_id = editor["user"]["id"]
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{member_id}", headers=owner["auth"]
    )
    assert removed.status_code in (200, 204), removed.text
    gone = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=editor["auth"]
    )
    assert gone.status_code == 404, gone.text
    more = await chat.start(
        owner["auth"], model=MODEL, message="And now?", chatId=started["chatId"]
    )
    await chat.events(more["sessionId"])
    sent = json.dumps(last_sent(chat)["messages"])
    assert "the team budget is 42" in sent  # the project's file, whoever uploaded it


async def test_the_sdk_gets_a_400_naming_reasoning_effort_for_a_model_that_takes_none(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    calls = len(chat.provider.requests)
    async with await sdk_for(chat, alice) as sdk:
        refused = "does not take a reasoning effort"
        with pytest.raises(openai.BadRequestError, match=refused) as raised:
            await sdk.chat.completions.create(
                model=MODEL, reasoning_effort="low",
                messages=[{"role": "user", "content": f"Q {uuid.uuid4()}"}],
            )  # fmt: skip
    assert raised.value.param == "reasoning_effort"
    assert len(chat.provider.requests) == calls  # refused before any provider is asked


async def test_the_sdk_raises_a_providers_mid_stream_error_after_the_reasoning(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    said = "The server had an error while processing your request (overloaded)."
    thinking = openai_reasoning_stream()[: 1 + len(THOUGHTS)]
    failing = sse({"error": {"message": said, "type": "server_error", "code": None}})
    chat.provider.script(Reply(chunks=[*thinking, failing]))
    thoughts: list[str] = []
    async with await sdk_for(chat, alice) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL, stream=True,
            messages=[{"role": "user", "content": f"Fail {uuid.uuid4()}"}],
        )  # fmt: skip

        async def read() -> None:
            async for chunk in stream:
                for choice in chunk.choices:
                    extra = (choice.delta.model_extra or {}).get("reasoning_content")
                    if extra:
                        thoughts.append(extra)

        with pytest.raises(openai.APIError, match="overloaded"):
            await read()
    assert thoughts == list(THOUGHTS)


async def test_a_fallback_writes_at_most_its_own_cap_and_the_reply_keeps_what_it_was_asked(
    xai_chat: Chat,  # noqa: F811  (the imported fixture)
) -> None:
    chat = xai_chat
    alice = await chat.world.register("alice")
    chat.provider.script(*[fail_the_reasoner("grok-3-mini")] * 4)
    started = await chat.start(
        alice["auth"], model=GROK_MINI, message=f"Long {uuid.uuid4()}",
        params={"reasoningEffort": "low", "maxTokens": 30_000},  # grok-3-mini: no cap known
    )  # fmt: skip
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    asked = [r.body for r in chat.provider.requests[-4:] if r.body.get("model") == "grok-3-mini"]
    assert asked
    assert {(b["max_tokens"], b["reasoning_effort"]) for b in asked} == {(30_000, "low")}
    # gpt-4o-mini writes at most 16,384 tokens: asked for that, without the effort
    assert sampling(last_sent(chat)) == {"max_completion_tokens": 16_384}
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert reply["model"] == MODEL
