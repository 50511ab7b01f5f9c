"""Hunt A of the current OpenAI and xAI models and the parameters they refuse (commit a7174c8):
end to end through the real app and container (Postgres, Redis), with OpenAI and xAI on
loopback speaking their wire protocol and refusing what the real APIs refuse
(``tests.support.fake_refusals``). Where Whalli applies a refused ``stop`` itself (across
chunks, next to reasoning and tool calls, in the cache, on regeneration), what a locally
stopped reply is charged, the efforts ``none`` and ``xhigh`` in presets and regenerations, and
Grok 4, which reasons in silence before every answer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import openai
import pytest

from tests.integration.http.test_chat_flow import _reply, _text
from tests.integration.http.test_chat_regenerate import messages
from tests.integration.http.test_refused_params import _chats, _pro, asked, documented
from tests.integration.http.test_v1_tools import Providers, providers
from tests.support.fake_providers import (
    RecordedRequest,
    Reply,
    ScriptedCall,
    openai_chunk,
    openai_error,
    openai_stream,
    openai_tool_stream,
    sse,
)
from tests.support.fake_refusals import openai_documented
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chats import MessageStatus

__all__ = ["documented", "providers"]  # the fixtures, shared with the refusal tests


def _stream(*deltas: str, usage: tuple[int, int] | None = (11, 4)) -> Reply:
    return Reply(chunks=openai_stream(deltas, usage=usage))


# --- a refused stop applied by Whalli, across chunks ----------------------------------------------
async def test_a_local_stop_spanning_three_chunks_cuts_where_it_begins(
    documented: Providers,
) -> None:
    documented.openai.script(_stream("The answer is fi", "ve, o", "r six", " or seven"))
    stream = await documented.sdk.chat.completions.create(
        model="openai/gpt-5-mini", messages=asked(), stop=["five, or six"], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    text, finish, usage = "", None, None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage

    assert (text, finish) == ("The answer is ", "stop")
    assert usage is not None
    assert usage.completion_tokens > 0


async def test_a_local_stop_whole_in_one_chunk_with_an_emoji_cuts_there(
    documented: Providers,
) -> None:
    documented.openai.script(_stream("Done \U0001f600 and then more words"))
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=["\U0001f600"]
    )

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Done ", "stop")


async def test_a_local_stop_meets_an_emoji_split_across_two_chunks(documented: Providers) -> None:
    # a proxy re-chunking by UTF-16 code units (see adapters/ai/_halves.py): legal JSON
    documented.openai.script(_stream("Done \ud83d", "\ude00 and then more words"))
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=["\U0001f600"]
    )

    assert "stop" not in documented.openai.requests[-1].body
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Done ", "stop")


async def test_a_local_stop_ignores_reasoning_and_cuts_only_the_answer(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    thoughts = ("I will say world", " here.")
    chunks = [
        sse(openai_chunk({"role": "assistant", "content": ""})),
        *(sse(openai_chunk({"reasoning_content": t, "content": None})) for t in thoughts),
        *openai_stream(("Hello", ", wor", "ld!"), usage=(11, 4))[1:],
    ]
    async with _chats(stack_urls, unique) as (chat, xai):
        auth = await _pro(chat)
        xai.script(Reply(chunks=chunks))
        started = await chat.start(
            auth, model="xai/grok-3-mini", message=f"hi {uuid.uuid4()}",
            params={"stop": ["world"], "reasoningEffort": "high"},
        )  # fmt: skip
        events = await chat.events(started["sessionId"])

        assert events[-1][1] == "done", events[-1]
        reasoning = "".join(d["delta"] for _, name, d in events if name == "reasoning")
        assert reasoning == "".join(thoughts)  # "world" in a thought cuts nothing
        assert _text(events) == "Hello, "
        assert events[-1][2]["finishReason"] == "stop"
        sent = xai.requests[-1].body
        assert "stop" not in sent
        assert sent["reasoning_effort"] == "high"
        reply = await _reply(chat, started["chatId"])
        assert (reply.content, reply.reasoning) == ("Hello, ", "".join(thoughts))
        assert reply.usage.completion_tokens > 0
        assert reply.cost_usd > 0


async def test_a_streamed_reply_cut_before_its_first_character_still_ends_with_stop(
    documented: Providers,
) -> None:
    stream = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=["Hel"], stream=True
    )
    chunks = [chunk async for chunk in stream]

    choices = [choice for chunk in chunks for choice in chunk.choices]
    assert "".join(c.delta.content or "" for c in choices) == ""
    assert choices[-1].finish_reason == "stop"
    assert choices[0].delta.role == "assistant"


async def test_a_local_stop_closes_the_upstream_request_at_once(documented: Providers) -> None:
    never = asyncio.Event()  # the rest of the answer never comes: only a close ends it
    pieces = openai_stream(("Hello", ", world", " and much more"), usage=(11, 4))
    documented.openai.script(Reply(chunks=pieces, gate=never, gate_after=3))
    completion = await asyncio.wait_for(
        documented.sdk.chat.completions.create(
            model="openai/o4-mini", messages=asked(), stop=["world"]
        ),
        timeout=10,
    )

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Hello, ", "stop")
    await asyncio.wait_for(documented.openai.disconnected.wait(), timeout=5)
    assert documented.openai.early_disconnects == 1


# --- a refused stop next to tool calls ------------------------------------------------------------
TOOLS: Any = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
]
LOOKUP = ScriptedCall("call_lookup", "lookup", ['{"q": ', '"Paris"}'])


async def test_a_tool_call_after_text_holding_part_of_a_local_stop_comes_whole(
    documented: Providers,
) -> None:
    documented.openai.script(
        Reply(chunks=openai_tool_stream([LOOKUP], ["Let me look it up", ". D"]))
    )
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=[". Done"], tools=TOOLS
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look it up. D"  # the held tail, not a stop
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_lookup", "lookup", '{"q": "Paris"}')
    ]


async def test_a_tool_call_streamed_after_text_holding_part_of_a_local_stop(
    documented: Providers,
) -> None:
    documented.openai.script(
        Reply(chunks=openai_tool_stream([LOOKUP], ["Let me look it up", ". D"]))
    )
    stream = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=[". Done"], tools=TOOLS, stream=True
    )
    order: list[str] = []
    text, finish = "", None
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                order.append("text")
                text += choice.delta.content
            if choice.delta.tool_calls:
                order.append("call")
            finish = choice.finish_reason or finish

    assert (text, finish) == ("Let me look it up. D", "tool_calls")
    # all the text, as written, before the first piece of a call
    assert order.index("call") > max(i for i, o in enumerate(order) if o == "text"), order


async def test_a_local_stop_met_before_a_tool_call_ends_the_reply_without_it(
    documented: Providers,
) -> None:
    documented.openai.script(
        Reply(chunks=openai_tool_stream([LOOKUP], ["I am done. Now", " a call"]))
    )
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=["done"], tools=TOOLS
    )

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("I am ", "stop")
    assert not choice.message.tool_calls


# --- what a locally stopped reply is charged ------------------------------------------------------
async def test_a_reply_cut_at_its_first_character_still_counts_its_prompt(
    documented: Providers,
) -> None:
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked("A long question " * 50), stop=["Hel"]
    )

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("", "stop")
    assert len(documented.openai.requests) == 1  # the provider was asked, and read the prompt
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0


async def test_a_chat_reply_cut_at_its_first_character_still_counts_its_prompt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, xai):
        auth = await _pro(chat)
        started = await chat.start(
            auth, model="xai/grok-4", message=f"A long question {uuid.uuid4()} " * 40,
            params={"stop": ["Hello"]},
        )  # fmt: skip
        events = await chat.events(started["sessionId"])

        assert events[-1][1] == "done", events[-1]
        assert (_text(events), events[-1][2]["finishReason"]) == ("", "stop")
        assert len(xai.requests) == 1
        reply = await _reply(chat, started["chatId"])
        assert reply.status is MessageStatus.COMPLETE
        assert reply.usage.prompt_tokens > 0
        assert reply.cost_usd > 0


async def test_a_whole_answer_cut_by_a_local_stop_keeps_the_usage_it_reported(
    documented: Providers,
) -> None:
    whole = {
        "id": "chatcmpl-whole", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-5",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello, world!"}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 900, "total_tokens": 911},
    }  # fmt: skip
    documented.openai.script(Reply(body=whole))
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=["world"]
    )

    assert completion.choices[0].message.content == "Hello, "
    assert completion.usage is not None
    # the whole answer was read: the provider's own count (its hidden reasoning in it) came
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 900)


# --- chats: the cache, regeneration, presets, the one-request start -------------------------------
async def test_a_locally_stopped_chat_reply_is_cached_and_replayed_as_cut(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, _):
        auth = await _pro(chat)
        message = f"hi {uuid.uuid4()}"
        params = {"stop": ["world"], "temperature": 0.0}
        done = []
        for _ in range(2):
            started = await chat.start(
                auth, model="openai/gpt-5", message=message, params=params, cache=True
            )
            events = await chat.events(started["sessionId"])
            assert events[-1][1] == "done", events[-1]
            assert _text(events) == "Hello, "
            done.append(events[-1][2])

        assert len(chat.provider.requests) == 1  # the second from the cache
        assert [d["cached"] for d in done] == [False, True]
        assert [d["finishReason"] for d in done] == ["stop", "stop"]
        assert done[0]["usage"] == done[1]["usage"]
        assert done[0]["usage"]["completionTokens"] > 0
        # another stop is another question: not the cut reply of the first
        other = await chat.start(
            auth, model="openai/gpt-5", message=message, params={"stop": ["Hello,"]}, cache=True
        )
        events = await chat.events(other["sessionId"])
        assert (_text(events), events[-1][2]["cached"]) == ("", False)


async def test_a_locally_stopped_v1_reply_is_cached_and_replayed_as_cut(
    documented: Providers,
) -> None:
    messages_ = asked()
    answers = []
    for _ in range(2):
        completion = await documented.sdk.chat.completions.create(
            model="openai/gpt-5", messages=messages_, stop=["wor"], extra_body={"cache": True}
        )
        answers.append(completion)

    assert len(documented.openai.requests) == 1  # the second from the cache
    for completion in answers:
        choice = completion.choices[0]
        assert (choice.message.content, choice.finish_reason) == ("Hello, ", "stop")
    first, second = (c.usage for c in answers)
    assert first is not None
    assert second is not None
    assert (first.prompt_tokens, first.completion_tokens) == (
        second.prompt_tokens, second.completion_tokens,
    )  # fmt: skip
    assert first.completion_tokens > 0


async def test_a_regeneration_applies_the_replaced_replys_refused_stop_again(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, _):
        auth = await _pro(chat)
        started = await chat.start(
            auth, model="openai/gpt-5.2", message=f"hi {uuid.uuid4()}",
            params={"stop": ["world"], "temperature": 0.4, "reasoningEffort": "xhigh"},
        )  # fmt: skip
        await chat.events(started["sessionId"])
        again = await chat.client.post(
            "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=auth
        )
        assert again.status_code == 201, again.text
        events = await chat.events(again.json()["sessionId"])

        assert events[-1][1] == "done", events[-1]
        assert (_text(events), events[-1][2]["finishReason"]) == ("Hello, ", "stop")
        sent = chat.provider.requests[-1].body
        assert sent["reasoning_effort"] == "xhigh"
        assert not {"stop", "temperature"} & sent.keys()
        reply = (await messages(chat, started["chatId"], auth))[-1]
        assert reply["status"] == "complete"
        assert reply["content"] == "Hello, "


async def test_presets_with_the_efforts_none_and_xhigh_start_and_regenerate(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, _):
        auth = await _pro(chat)
        made = {}
        for effort in ("none", "xhigh"):
            response = await chat.client.post(
                "/api/presets", headers=auth,
                json={"name": effort, "model": "openai/gpt-5.2",
                      "params": {"reasoningEffort": effort, "temperature": 0.3, "topP": 0.5}},
            )  # fmt: skip
            assert response.status_code == 201, response.text
            made[effort] = response.json()["id"]

        started = await chat.start(auth, presetId=made["none"], message=f"hi {uuid.uuid4()}")
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        sent = chat.provider.requests[-1].body
        assert (sent["reasoning_effort"], sent.get("temperature"), sent.get("top_p")) == (
            "none", 0.3, 0.5,
        )  # fmt: skip

        again = await chat.client.post(
            "/api/chat/regenerate", headers=auth,
            json={"chatId": started["chatId"], "presetId": made["xhigh"]},
        )  # fmt: skip
        assert again.status_code == 201, again.text
        assert (await chat.events(again.json()["sessionId"]))[-1][1] == "done"
        sent = chat.provider.requests[-1].body
        assert sent["reasoning_effort"] == "xhigh"
        assert not {"temperature", "top_p"} & sent.keys()  # refused while it reasons

        # the preset's effort for a model that does not take it: a 422 naming it
        refused = await chat.client.post(
            "/api/chat/regenerate", headers=auth,
            json={"chatId": started["chatId"], "presetId": made["xhigh"],
                  "model": "openai/gpt-5.1"},
        )  # fmt: skip
        assert refused.status_code == 422, refused.text
        assert "xhigh" in refused.text


async def test_the_one_request_start_applies_a_refused_stop(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, xai):
        auth = await _pro(chat)
        events = await chat.start_streaming(
            auth, model="xai/grok-4", message=f"hi {uuid.uuid4()}",
            params={"stop": [", w"], "frequencyPenalty": 0.5},
        )  # fmt: skip

        assert events[0][1] == "session"
        assert events[-1][1] == "done", events[-1]
        assert (_text(events), events[-1][2]["finishReason"]) == ("Hello", "stop")
        assert not {"stop", "frequency_penalty"} & xai.requests[-1].body.keys()
        usage = await chat.client.get("/api/usage", headers=auth)
        assert usage.status_code == 200, usage.text
        assert usage.json()["total"]["costUsd"] > 0


# --- efforts and fallbacks ------------------------------------------------------------------------
async def test_dev_echo_refuses_the_efforts_none_and_xhigh_naming_the_ones_it_takes(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, _):
        auth = await _pro(chat)
        for effort in ("none", "xhigh"):
            response = await chat.client.post(
                "/api/chat/start", headers=auth,
                json={"model": "dev/echo", "message": "hi", "params": {"reasoningEffort": effort}},
            )  # fmt: skip
            assert response.status_code == 422, response.text
            assert f"minimal or low or medium or high, not {effort}" in response.text
        echoed = await chat.start(
            auth, model="dev/echo", message="one two", params={"reasoningEffort": "minimal"}
        )
        events = await chat.events(echoed["sessionId"])
        assert events[-1][1] == "done"
        assert any(name == "reasoning" for _, name, _ in events)


async def test_a_chats_fallback_asked_none_gets_the_least_effort_it_takes_and_keeps_it(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    documented_reply = openai_documented()

    def down_for_gpt_5_1(request: RecordedRequest) -> Reply:
        if request.body.get("model") == "gpt-5.1":
            return Reply(status=503, body=openai_error("Overloaded.", "server_error"))
        return documented_reply(request)

    async with _chats(stack_urls, unique, down_for_gpt_5_1) as (chat, _):
        auth = await _pro(chat)
        started = await chat.start(
            auth, model="openai/gpt-5.1", message=f"quick {uuid.uuid4()}",
            params={"reasoningEffort": "none", "temperature": 0.2, "stop": ["world"]},
        )  # fmt: skip
        events = await chat.events(started["sessionId"])

        assert events[-1][1] == "done", events[-1]
        assert _text(events) == "Hello, "
        sent = chat.provider.requests[-1].body
        assert (sent["model"], sent["reasoning_effort"]) == ("gpt-5", "minimal")
        assert not {"temperature", "stop"} & sent.keys()
        reply = (await messages(chat, started["chatId"], auth))[-1]
        assert reply["model"] == "openai/gpt-5"
        # regenerated by the model that answered, as it was asked of it
        again = await chat.client.post(
            "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=auth
        )
        assert again.status_code == 201, again.text
        assert (await chat.events(again.json()["sessionId"]))[-1][1] == "done"
        sent = chat.provider.requests[-1].body
        assert (sent["model"], sent["reasoning_effort"]) == ("gpt-5", "minimal")


async def test_on_v1_a_fallback_that_does_not_take_the_effort_is_skipped(
    documented: Providers,
) -> None:
    documented_reply = openai_documented()

    def down_for_gpt_5_2(request: RecordedRequest) -> Reply:
        if request.body.get("model") == "gpt-5.2":
            return Reply(status=503, body=openai_error("Overloaded.", "server_error"))
        return documented_reply(request)

    documented.openai._default = down_for_gpt_5_2
    with pytest.raises(openai.APIStatusError):
        await documented.sdk.chat.completions.create(
            model="openai/gpt-5.2", messages=asked(), reasoning_effort="xhigh"
        )
    assert {r.body["model"] for r in documented.openai.requests} == {"gpt-5.2"}

    # without an effort the fallback answers, the temperature it refuses left out
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5.2", messages=asked(), temperature=0.4
    )
    assert completion.model == "openai/gpt-5.1"
    sent = documented.openai.requests[-1].body
    assert sent["model"] == "gpt-5.1"
    assert "temperature" not in sent


# --- Grok 4 thinks in silence before every answer -------------------------------------------------
async def test_the_sweeper_leaves_alone_a_grok_4_reply_still_thinking(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """As a deployment whose reasoning first-token timeout (10 s here) outlasts the sweeper's
    "abandoned" (2 s here, 900 s by default): an o-series reply is checkpointed while its model
    thinks, and so should Grok 4's be, which is waited for as long."""
    env = {
        "WHALLI_PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S": "10",
        "WHALLI_REPLY_ABANDONED_AFTER_S": "2",
        "WHALLI_CHAT_PROGRESS_EVERY_S": "0.2",
    }
    async with _chats(stack_urls, unique, **env) as (chat, xai):
        auth = await _pro(chat)
        slow = _stream("Hello", ", ", "world", "!")
        slow.first_delay = 3.5
        xai.script(slow)
        started = await chat.start(auth, model="xai/grok-4", message=f"Think {uuid.uuid4()}")
        await asyncio.sleep(2.5)  # no news of the reply for longer than the sweeper's 2 s
        sweeper = await resolved(chat.world.container.services.fail_abandoned_replies())
        await sweeper.execute()  # (it may sweep other tests' abandoned replies: one database)
        meanwhile = (await messages(chat, started["chatId"], auth))[-1]
        events = await chat.events(started["sessionId"])

        assert events[-1][1] == "done", events[-1]  # the generation itself went on
        assert len(xai.requests) == 1
        assert meanwhile["status"] in ("pending", "streaming"), meanwhile  # not failed
        assert meanwhile["error"] is None
