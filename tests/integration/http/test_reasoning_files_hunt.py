"""Hunting defects in today's features (earlier files in the context, attached images to
vision models, reasoning models, provider refusals, regeneration with a preset) through the
real app, Postgres, Redis and S3, with the providers on loopback. Kept as a regression suite:
six of these tests found defects (a fallback sent a reasoning effort it cannot take, one image
attached many times passing the 20-image limit, a NUL from the model losing the reply, progress
checkpoints without the reasoning, a Claude tool loop with thinking refused at its second step,
reasoning models never titling chats), all fixed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_earlier_files import extracted_file, uploaded_image
from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.http.test_chat_regenerate import messages
from tests.integration.http.test_files import PNG, form, multipart
from tests.integration.http.test_new_features_hunt import _plan
from tests.integration.test_title_worker import is_title_request
from tests.support.fake_providers import (
    API_KEY,
    DELTAS,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    anthropic_default,
    anthropic_error,
    anthropic_stream,
    openai_chunk,
    openai_default,
    openai_error,
    openai_stream,
    sse,
)
from tests.support.fake_reasoning import THOUGHTS, openai_reasoning_stream
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.chats import title_from
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.jobs import TitleChat
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

MODEL = "openai/gpt-4o-mini"
REASONER = "openai/o4-mini"  # pro; falls back to gpt-4o-mini, which takes no reasoning effort
GROK_MINI = "xai/grok-3-mini"  # free, reasons, reads no images; falls back to gpt-4o-mini

Events = list[tuple[str | None, str, dict[str, Any]]]


def named(events: Events, name: str) -> list[str]:
    return [data["delta"] for _, event, data in events if event == name]


def thinking_only(thoughts: tuple[str, ...] = THOUGHTS) -> list[bytes]:
    """The role chunk and the reasoning pieces, nothing after them."""
    return openai_reasoning_stream(thoughts)[: 1 + len(thoughts)]


@pytest.fixture
async def xai_chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    """The app with OpenAI and xAI both on the one OpenAI-compatible fake provider."""
    async with FakeProviderServer(openai_default()) as provider, _app(
        stack_urls, unique, provider, WHALLI_XAI_API_KEY=API_KEY,
        WHALLI_XAI_BASE_URL=provider.url,
    ) as chat:  # fmt: skip
        yield chat


# === reasoning =================================================================================
def fail_the_reasoner(upstream: str) -> Any:
    """A script: a 500 for ``upstream``, a normal answer for anything else."""

    def reply(request: RecordedRequest) -> Reply:
        if request.body.get("model") == upstream:
            return Reply(status=500, body=openai_error("boom", "server_error", "server_error"))
        return Reply(chunks=openai_stream())

    return reply


async def test_a_fallback_that_takes_no_reasoning_effort_is_not_sent_one(
    xai_chat: Chat,
) -> None:
    chat = xai_chat
    alice = await chat.world.register("alice")
    chat.provider.script(*[fail_the_reasoner("grok-3-mini")] * 4)
    started = await chat.start(
        alice["auth"], model=GROK_MINI, message=f"Think {uuid.uuid4()}",
        params={"reasoningEffort": "high"},
    )  # fmt: skip
    events = await chat.events(started["sessionId"])
    sent = [r.body for r in chat.provider.requests]
    assert [b["model"] for b in sent][-1] == "gpt-4o-mini"  # the fallback answered...
    assert events[-1][1] == "done"
    # ...and must not be asked for a reasoning effort: OpenAI refuses it for gpt-4o-mini
    # (400 "Unrecognized request argument supplied: reasoning_effort"), as /v1 knows
    # (CompleteChat skips such a fallback)
    assert all("reasoning_effort" not in b for b in sent if b["model"] == "gpt-4o-mini")


async def test_v1_never_sends_a_reasoning_effort_to_a_fallback_that_takes_none(
    xai_chat: Chat,
) -> None:
    chat = xai_chat
    alice = await chat.world.register("alice")
    key = await _v1_key(chat, alice["auth"])
    chat.provider.script(*[fail_the_reasoner("grok-3-mini")] * 4)
    body = {
        "model": GROK_MINI, "reasoning_effort": "low", "cache": False,
        "messages": [{"role": "user", "content": f"Think {uuid.uuid4()}"}],
    }  # fmt: skip
    await chat.client.post("/v1/chat/completions", json=body, headers=key)
    sent = [r.body for r in chat.provider.requests]
    assert all("reasoning_effort" not in b for b in sent if b["model"] == "gpt-4o-mini")


async def test_a_stop_while_the_model_reasons_keeps_its_reasoning_in_the_aborted_reply(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=thinking_only(), hold=True))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Ponder {uuid.uuid4()}")
    first = await chat.events(started["sessionId"], limit=2)
    assert named(first, "reasoning") == list(THOUGHTS)
    stop = await chat.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=alice["auth"]
    )
    assert stop.status_code == 202, stop.text
    rest = await chat.events(started["sessionId"], last_event_id=first[-1][0])
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "aborted")
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert (reply["status"], reply["content"]) == ("aborted", "")
    assert reply["reasoning"] == "".join(THOUGHTS)
    assert reply["usage"]["completionTokens"] > 0  # the thinking was served: an estimate


async def test_an_error_after_reasoning_fails_the_reply_keeping_it_without_a_fallback(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    chat.provider.script(Reply(chunks=thinking_only(), abort=True))
    calls = len(chat.provider.requests)
    started = await chat.start(alice["auth"], model=REASONER, message=f"Cut {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    assert named(events, "reasoning") == list(THOUGHTS)
    assert events[-1][1] == "error"
    assert len(chat.provider.requests) == calls + 1  # neither retried nor fallen back
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert (reply["status"], reply["model"]) == ("failed", REASONER)
    assert reply["reasoning"] == "".join(THOUGHTS)


async def test_a_cache_hit_replays_the_reasoning_before_the_text_and_keeps_it(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    prompt = f"Think once {uuid.uuid4()}"
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    first = await chat.start(alice["auth"], model=MODEL, message=prompt)
    await chat.events(first["sessionId"])
    calls = len(chat.provider.requests)
    second = await chat.start(alice["auth"], model=MODEL, message=prompt)
    events = await chat.events(second["sessionId"])
    assert len(chat.provider.requests) == calls
    assert [e for _, e, _ in events] == ["reasoning"] * 2 + ["token"] * len(DELTAS) + ["done"]
    assert named(events, "reasoning") == list(THOUGHTS)
    assert events[-1][2]["cached"] is True
    reply = (await messages(chat, second["chatId"], alice["auth"]))[-1]
    assert reply["reasoning"] == "".join(THOUGHTS)


async def test_reconnecting_in_the_middle_of_the_reasoning_resumes_exactly_after_it(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Resume {uuid.uuid4()}")
    everything = await chat.events(started["sessionId"])
    one = await chat.events(started["sessionId"], limit=1)
    assert one[0][1] == "reasoning"
    rest = await chat.events(started["sessionId"], last_event_id=one[0][0])
    assert one + rest == everything


async def test_a_reply_of_reasoning_alone_completes_and_is_left_out_of_the_next_context(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream(deltas=())))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Silent {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    assert (events[-1][2]["status"], events[-1][2]["finishReason"]) == ("complete", "stop")
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert (reply["content"], reply["reasoning"]) == ("", "".join(THOUGHTS))
    more = await chat.start(alice["auth"], model=MODEL, message="Hello?", chatId=started["chatId"])
    await chat.events(more["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "user"]


async def test_without_reported_usage_the_reasoning_counts_in_the_estimate(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    long_thought = ("x" * 4000,)
    plain = openai_stream(["ok"], usage=None)
    pieces = [plain[0], sse(openai_chunk({"reasoning_content": long_thought[0]})), *plain[1:]]
    chat.provider.script(Reply(chunks=pieces))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Count {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert reply["usage"]["completionTokens"] >= 1000  # 4,000 characters of thinking


# === /v1 and reasoning ===========================================================================
async def _v1_key(chat: Chat, auth: dict[str, str]) -> dict[str, str]:
    created = await chat.client.post("/api/keys", json={"name": "sdk"}, headers=auth)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['secret']}"}


def _tool_reasoning_stream() -> list[bytes]:
    role = sse(openai_chunk({"role": "assistant", "content": None}))
    thinking = [sse(openai_chunk({"reasoning_content": t})) for t in THOUGHTS]
    call = {
        "index": 0, "id": "call_1", "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }  # fmt: skip
    end = openai_stream([], finish_reason="tool_calls")[1:]
    return [role, *thinking, sse(openai_chunk({"tool_calls": [call]})), *end]


async def test_v1_a_whole_reply_with_tool_calls_keeps_its_reasoning_content(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    key = await _v1_key(chat, alice["auth"])
    chat.provider.script(Reply(chunks=_tool_reasoning_stream()))
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    body = {
        "model": MODEL, "tools": tools, "cache": False,
        "messages": [{"role": "user", "content": f"Weather? {uuid.uuid4()}"}],
    }  # fmt: skip
    whole = await chat.client.post("/v1/chat/completions", json=body, headers=key)
    assert whole.status_code == 200, whole.text
    choice = whole.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "weather"
    assert choice["message"]["reasoning_content"] == "".join(THOUGHTS)


async def test_v1_a_streamed_reasoning_reply_ends_with_its_usage_when_asked(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    key = await _v1_key(chat, alice["auth"])
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    body = {
        "model": MODEL, "stream": True, "cache": False,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"Usage {uuid.uuid4()}"}],
    }  # fmt: skip
    streamed = await chat.client.post("/v1/chat/completions", json=body, headers=key)
    assert streamed.status_code == 200, streamed.text
    chunks = [
        json.loads(line[6:]) for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]  # fmt: skip
    thought = [
        c["choices"][0]["delta"].get("reasoning_content") for c in chunks if c.get("choices")
    ]
    assert [t for t in thought if t] == list(THOUGHTS)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


# === regeneration with a preset ===============================================================
async def test_a_regeneration_with_a_preset_asks_its_model_for_its_reasoning_effort(
    xai_chat: Chat,
) -> None:
    chat = xai_chat
    alice = await chat.world.register("alice")
    preset = await chat.client.post(
        "/api/presets", headers=alice["auth"],
        json={"name": "Think", "model": GROK_MINI, "params": {"reasoningEffort": "low"}},
    )  # fmt: skip
    assert preset.status_code == 201, preset.text
    started = await chat.start(alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    again = await chat.client.post(
        "/api/chat/regenerate", headers=alice["auth"],
        json={"chatId": started["chatId"], "presetId": preset.json()["id"]},
    )  # fmt: skip
    assert again.status_code == 201, again.text
    events = await chat.events(again.json()["sessionId"])
    assert named(events, "reasoning") == list(THOUGHTS)
    sent = chat.provider.requests[-1].body
    assert (sent["model"], sent["reasoning_effort"]) == ("grok-3-mini", "low")
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert (reply["model"], reply["reasoning"]) == (GROK_MINI, "".join(THOUGHTS))


async def test_a_presets_model_changed_to_one_that_does_not_reason_is_refused(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    preset = await chat.client.post(
        "/api/presets", headers=alice["auth"],
        json={"name": "Think", "model": REASONER, "params": {"reasoningEffort": "low"}},
    )  # fmt: skip
    assert preset.status_code == 201, preset.text
    changed = await chat.client.patch(
        f"/api/presets/{preset.json()['id']}", json={"model": MODEL}, headers=alice["auth"]
    )
    assert changed.status_code == 422, changed.text
    assert changed.json()["field"] == "params.reasoningEffort"


# === images =====================================================================================
async def upload_png(
    chat: Chat, pool: PostgresPool, user: dict[str, Any], data: bytes, name: str
) -> str:
    response = await chat.client.post(
        "/api/files/upload", content=form(data, name), headers={**user["auth"], **multipart()}
    )
    assert response.status_code == 201, response.text
    attachment_id = uuid.UUID(response.json()["id"])
    now = datetime.now(UTC)
    async with PostgresUnitOfWork(pool) as uow:
        stored = await uow.attachments.get_for_update(attachment_id)
        stored.start_processing(now)
        stored.complete(ExtractionResult(text=f"OCR of {name}", method="ocr"), now)
        await uow.attachments.update(stored)
        await uow.commit()
    return str(attachment_id)


def image_parts(request: RecordedRequest) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in request.body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


async def test_a_prompt_never_holds_more_than_twenty_images(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    cat = await uploaded_image(chat, pg_pool, alice)
    chat_id = None
    for turn in range(3):
        body: dict[str, Any] = {"model": MODEL, "message": f"Look {turn} {uuid.uuid4()}"}
        if chat_id:
            body["chatId"] = chat_id
        started = await chat.start(alice["auth"], attachmentIds=[cat] * 10, **body)
        chat_id = started["chatId"]
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    assert len(image_parts(chat.provider.requests[-1])) <= 20


async def test_the_same_image_asks_once_and_another_image_of_the_same_name_asks_again(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    prompt = f"What is it? {uuid.uuid4()}"
    cat = await upload_png(chat, pg_pool, alice, PNG, "pet.png")
    first = await chat.start(alice["auth"], model=MODEL, message=prompt, attachmentIds=[cat])
    await chat.events(first["sessionId"])
    calls = len(chat.provider.requests)
    again = await chat.start(alice["auth"], model=MODEL, message=prompt, attachmentIds=[cat])
    assert (await chat.events(again["sessionId"]))[-1][2]["cached"] is True
    assert len(chat.provider.requests) == calls

    dog = await upload_png(chat, pg_pool, alice, PNG + b"another", "pet.png")
    other = await chat.start(alice["auth"], model=MODEL, message=prompt, attachmentIds=[dog])
    assert (await chat.events(other["sessionId"]))[-1][2]["cached"] is False
    assert len(chat.provider.requests) == calls + 1


async def test_an_image_whose_blob_is_gone_goes_as_its_text(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    cat = await upload_png(chat, pg_pool, alice, PNG, "gone.png")
    project_id = personal_project_id(uuid.UUID(alice["user"]["id"]))
    blobs = await resolved(chat.world.container.adapters.blob_storage())
    await blobs.delete(Attachment.key_for(project_id, uuid.UUID(cat)))
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"See {uuid.uuid4()}", attachmentIds=[cat]
    )
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    last = chat.provider.requests[-1].body["messages"][-1]["content"]
    assert isinstance(last, str)
    assert last.startswith("Attached file: gone.png\nOCR of gone.png\n\nSee ")


async def test_an_earlier_image_goes_as_text_once_the_chat_moves_to_a_model_without_vision(
    xai_chat: Chat, pg_pool: PostgresPool
) -> None:
    chat = xai_chat
    alice = await chat.world.register("alice")
    cat = await upload_png(chat, pg_pool, alice, PNG, "cat.png")
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"Look {uuid.uuid4()}", attachmentIds=[cat]
    )
    await chat.events(first["sessionId"])
    assert len(image_parts(chat.provider.requests[-1])) == 1
    more = await chat.start(
        alice["auth"], model=GROK_MINI, message="And now?", chatId=first["chatId"]
    )
    assert (await chat.events(more["sessionId"]))[-1][1] == "done"
    sent = chat.provider.requests[-1]
    assert sent.body["model"] == "grok-3-mini"
    assert image_parts(sent) == []
    assert sent.body["messages"][0]["content"].startswith("Attached file: cat.png\nOCR of cat.png")


# === earlier files ============================================================================
async def test_a_fork_into_another_project_takes_no_file_text_along(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    notes = await extracted_file(pg_pool, alice, "notes.txt", "the private plan")
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"Read {uuid.uuid4()}", attachmentIds=[notes]
    )
    await chat.events(first["sessionId"])
    team = await chat.client.post("/api/projects", json={"name": "Team"}, headers=alice["auth"])
    assert team.status_code == 201, team.text
    forked = await chat.client.post(
        f"/api/chats/{first['chatId']}/fork", json={"projectId": team.json()["id"]},
        headers=alice["auth"],
    )  # fmt: skip
    assert forked.status_code == 201, forked.text
    more = await chat.start(alice["auth"], model=MODEL, message="And?", chatId=forked.json()["id"])
    await chat.events(more["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0]["content"].startswith("Read ")
    assert all("private plan" not in m["content"] for m in sent)

    same = await chat.client.post(
        f"/api/chats/{first['chatId']}/fork", json={}, headers=alice["auth"]
    )
    assert same.status_code == 201, same.text
    again = await chat.start(alice["auth"], model=MODEL, message="Go", chatId=same.json()["id"])
    await chat.events(again["sessionId"])
    kept = chat.provider.requests[-1].body["messages"][0]["content"]
    assert kept.startswith("Attached file: notes.txt\nthe private plan\n\nRead ")


@pytest.fixture
def small_catalog(tmp_path: Path) -> str:
    """The catalog with gpt-4o-mini's window cut to 3,000 tokens (and its output cap, which
    must fit in it, to 1,000)."""
    text = Path("catalog/models.toml").read_text()
    head, sep, rest = text.partition('id = "openai/gpt-4o-mini"')
    rest = rest.replace("context_window = 128000", "context_window = 3000", 1)
    rest = rest.replace("max_output_tokens = 16384", "max_output_tokens = 1000", 1)
    path = tmp_path / "models.toml"
    path.write_text(head + sep + rest)
    return str(path)


async def test_an_earlier_file_too_long_for_a_small_window_is_named_as_left_out(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, pg_pool: PostgresPool,
    small_catalog: str,
) -> None:  # fmt: skip
    async with chat_app(stack_urls, unique, WHALLI_CATALOG_PATH=small_catalog) as chat:
        alice = await chat.world.register("alice")
        report = await extracted_file(pg_pool, alice, "report.txt", "r" * 6000)
        first = await chat.start(
            alice["auth"], model=MODEL, message=f"Read {uuid.uuid4()}", attachmentIds=[report]
        )
        await chat.events(first["sessionId"])
        more = await chat.start(
            alice["auth"], model=MODEL, message="q" * 3000, chatId=first["chatId"]
        )
        await chat.events(more["sessionId"])
        sent = chat.provider.requests[-1].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[0]["content"].startswith(
            "Attached file: report.txt (left out: the conversation no longer fits with it)\n\nRead "
        )


@pytest.mark.parametrize("where", ["reasoning", "content"])
async def test_a_nul_streamed_by_the_model_does_not_lose_the_reply(chat: Chat, where: str) -> None:
    alice = await chat.world.register("alice")
    thoughts, deltas = (("a\x00b",), ("xy",)) if where == "reasoning" else (("ab",), ("x\x00y",))
    chat.provider.script(Reply(chunks=openai_reasoning_stream(thoughts, deltas)))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Nul {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]
    assert reply["status"] == "complete"
    assert reply["content"].startswith("x")
    assert reply["content"].endswith("y")
    assert reply["reasoning"].startswith("a")
    assert reply["reasoning"].endswith("b")
    assert reply["usage"]["completionTokens"] > 0


async def test_progress_keeps_the_reasoning_so_far_with_the_text_so_far(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_CHAT_PROGRESS_EVERY_S="0.1") as chat:
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        # role, two thoughts, "Hello", then held until the gate opens
        chat.provider.script(
            Reply(chunks=openai_reasoning_stream(), delay=0.15, gate=gate, gate_after=4)
        )
        started = await chat.start(alice["auth"], model=MODEL, message=f"Slow {uuid.uuid4()}")
        try:
            seen: dict[str, Any] = {}
            for _ in range(100):
                seen = (await messages(chat, started["chatId"], alice["auth"]))[-1]
                if seen["content"]:
                    break
                await asyncio.sleep(0.05)
            assert (seen["status"], seen["content"]) == ("streaming", "Hello")
            progress_reasoning = seen["reasoning"]
        finally:
            gate.set()
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        assert progress_reasoning == "".join(THOUGHTS)


# === Claude's extended thinking on /v1 =========================================================
# Anthropic's documented rule (extended thinking with tool use): with thinking enabled, the last
# assistant turn before tool results must start with its thinking block, signature included;
# else its 400 below. A /v1 (OpenAI-shaped) client can never send that block back.
THINKING_TOOL_400 = (
    "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
    "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with a "
    "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
    "We recommend you include thinking blocks from previous turns. To avoid this "
    "requirement, disable `thinking`."
)


def anthropic_checking_thinking(request: RecordedRequest) -> Reply:
    assistant = [m for m in request.body["messages"] if m["role"] == "assistant"]
    content = assistant[-1]["content"] if assistant else ""
    first = content[0].get("type") if isinstance(content, list) and content else None
    if request.body.get("thinking") and first == "tool_use":
        body = anthropic_error("invalid_request_error", THINKING_TOOL_400)
        return Reply(status=400, body=body)
    return Reply(chunks=anthropic_stream())


async def test_v1_a_tool_loop_with_claude_thinking_can_send_the_tool_results_back(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_default()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "pro")
        key = await _v1_key(chat, alice["auth"])
        anthropic.script(anthropic_checking_thinking)
        tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
        call = {
            "id": "toolu_1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }  # fmt: skip
        body = {
            "model": "anthropic/claude-sonnet-4", "reasoning_effort": "low", "tools": tools,
            "cache": False,
            "messages": [
                {"role": "user", "content": f"Weather in Paris? {uuid.uuid4()}"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
            ],
        }  # fmt: skip
        answered = await chat.client.post("/v1/chat/completions", json=body, headers=key)
        assert len(anthropic.requests) == 1
        assert answered.status_code == 200, answered.text


async def test_claude_gets_an_image_up_to_its_limit_and_the_text_of_one_byte_more(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, pg_pool: PostgresPool
) -> None:
    limit = 5 * 1024 * 1024 // 4 * 3  # 3.75 MiB: 5 MiB of base64
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_default()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        # a header of 640x480 px (within Claude's 8000 a side: only the bytes are at stake)
        png = PNG[:16] + (640).to_bytes(4) + (480).to_bytes(4) + PNG[24:]
        fits = await upload_png(chat, pg_pool, alice, png.ljust(limit, b"\x00"), "fits.png")
        over = await upload_png(chat, pg_pool, alice, png.ljust(limit + 1, b"\x00"), "over.png")
        started = await chat.start(
            alice["auth"], model="anthropic/claude-3-5-haiku", message=f"Two {uuid.uuid4()}",
            attachmentIds=[fits, over],
        )  # fmt: skip
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        content = anthropic.requests[-1].body["messages"][-1]["content"]
        kinds = [block["type"] for block in content]
        assert kinds == ["text", "image", "text"]
        assert content[0]["text"] == "Attached image: fits.png"
        assert len(content[1]["source"]["data"]) == 5 * 1024 * 1024
        assert content[2]["text"].startswith("Attached file: over.png\nOCR of over.png")


async def test_the_newest_fifty_earlier_files_stay_in_the_context(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    chat_id = None
    for turn in range(6):
        files = [
            await extracted_file(pg_pool, alice, f"t{turn}f{i}.txt", f"text {turn}.{i}")
            for i in range(10)
        ]
        body: dict[str, Any] = {"model": MODEL, "message": f"Turn {turn} {uuid.uuid4()}"}
        if chat_id:
            body["chatId"] = chat_id
        started = await chat.start(alice["auth"], attachmentIds=files, **body)
        chat_id = started["chatId"]
        await chat.events(started["sessionId"])
    last = await chat.start(alice["auth"], model=MODEL, message="All?", chatId=chat_id)
    await chat.events(last["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    users = [m["content"] for m in sent if m["role"] == "user"]
    assert len(users) == 7
    assert "Attached file" not in users[0]  # the oldest ten files: past the newest fifty
    assert all(u.count("Attached file: ") == 10 for u in users[1:6])
    assert "Attached file: t5f9.txt\ntext 5.9" in users[5]


# === provider refusals ==========================================================================
async def _refused(chat: Chat, reply: Reply) -> tuple[dict[str, Any], dict[str, Any]]:
    """The error event and the saved reply of a start the provider answers with ``reply``."""
    alice = await chat.world.register("alice")
    chat.provider.script(reply)
    started = await chat.start(alice["auth"], model=MODEL, message=f"Refuse {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "error"
    return events[-1][2], (await messages(chat, started["chatId"], alice["auth"]))[-1]


async def test_a_refusal_echoing_a_key_in_a_long_message_is_cut_and_redacted(chat: Chat) -> None:
    key = "sk-proj-AbCdEf0123456789abcdefXYZ"
    said = f"Invalid value for 'messages':\nfound {key} and Bearer eyJhbGciOi.x.y " + "z" * 2000
    error, reply = await _refused(chat, Reply(status=400, body=openai_error(said, "invalid_value")))
    assert error["code"] == "provider_rejected_request"
    assert key not in error["message"]
    assert "eyJhbGciOi" not in error["message"]
    assert "\n" not in error["message"]
    assert "Invalid value for 'messages': found [redacted]" in error["message"]
    assert len(error["message"]) < 600
    assert reply["error"] == error["message"]
    assert reply["status"] == "failed"


async def test_a_413_with_an_html_body_is_a_refusal_that_says_only_its_status(chat: Chat) -> None:
    page = "<html><body><h1>413 Request Entity Too Large</h1>nginx</body></html>"
    # sent as it is (not JSON), in a chunked body
    error, _ = await _refused(chat, Reply(status=413, chunks=[page.encode()]))
    assert error["code"] == "provider_rejected_request"
    assert error["message"] == "The openai provider rejected the request (HTTP 413)."
    assert len(chat.provider.requests) == 1  # neither retried nor another model asked


async def test_a_403_never_passes_the_providers_words_on(chat: Chat) -> None:
    said = "Project proj_secret123 does not have access to model gpt-4o-mini"
    error, _ = await _refused(
        chat, Reply(status=403, body=openai_error(said, "model_not_found", "invalid_request"))
    )
    assert "proj_secret123" not in error["message"]


async def test_a_fork_and_an_export_keep_the_replys_reasoning(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Keep {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    forked = await chat.client.post(
        f"/api/chats/{started['chatId']}/fork", json={}, headers=alice["auth"]
    )
    assert forked.status_code == 201, forked.text
    assert forked.json()["messages"][-1]["reasoning"] == "".join(THOUGHTS)
    exported = await chat.client.get(
        f"/api/chats/{started['chatId']}/export", headers=alice["auth"]
    )
    assert exported.status_code == 200, exported.text
    assert f"*Reasoning*\n\n> {''.join(THOUGHTS)}\n\nHello, world!" in exported.text


# === automatic titles of a reasoning model's chat ==============================================
# OpenAI's o-series refuses any temperature but the default, as its 400 says:
O_SERIES_TEMPERATURE = (
    "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default "
    "(1) value is supported."
)


def openai_o_series(request: RecordedRequest) -> Reply:
    """OpenAI's default answers; an o-series model refuses a temperature other than 1."""
    temperature = request.body.get("temperature")
    if request.body.get("model") == "o4-mini" and temperature not in (None, 1):
        body = openai_error(O_SERIES_TEMPERATURE, "unsupported_value")
        return Reply(status=400, body=body)
    return openai_default()(request)


async def test_a_chat_answered_by_a_reasoning_model_still_gets_its_automatic_title(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_o_series) as provider,
        _app(stack_urls, unique, provider, WHALLI_QUEUE_NAME=f"hunt-reason-{unique}") as chat,
    ):
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "pro")
        message = f"Explain sourdough starters {uuid.uuid4()}"
        started = await chat.start(alice["auth"], model=REASONER, message=message)
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        handler = await resolved(chat.world.container.services.title_chat())
        # the job fails (the worker would try it again, to the same refusal)
        with contextlib.suppress(ProviderError):
            await handler.execute(
                TitleChat(chat_id=uuid.UUID(started["chatId"]), expected_title=title_from(message))
            )
        asked = [r.body for r in provider.requests if is_title_request(r)]
        assert asked
        assert asked[-1]["model"] == "o4-mini"
        shown = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
        assert shown.json()["title"] != title_from(message)
