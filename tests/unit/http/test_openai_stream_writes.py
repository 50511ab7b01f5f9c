"""/v1's streamed chunks, cut into writes: what is known at once goes in one write (the role's
chunk with the first delta, the finish reason's chunk with the usage and ``[DONE]``), and the
chunks read the same as OpenAI's however they are cut."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.entrypoints.http.controllers.openai_compat import Event, _Completion, _sse
from whalli.entrypoints.http.lean_stream import LastChunk
from whalli.ports.chat_model import StreamDelta, StreamEnd, ToolCallDelta

END = StreamEnd(finish_reason="stop", usage=TokenUsage(prompt_tokens=3, completion_tokens=2))


async def _events(*events: Event, fail: bool = False) -> AsyncGenerator[Event, None]:
    for event in events:
        yield event
    if fail:
        raise ProviderError("The provider failed.")


async def writes(first: Event, *rest: Event, usage: bool = True, fail: bool = False) -> list[str]:
    completion = _Completion("chatcmpl-1", 0, "dev/echo", include_usage=usage)
    return [w.decode() async for w in _sse(completion, first, _events(*rest, fail=fail))]


def data(write: str) -> list[Any]:
    """The events of one write (each ``data: ...`` and a blank line), decoded."""
    assert write.endswith("\n\n"), write
    events = write.removesuffix("\n\n").split("\n\n")
    assert all(e.startswith("data: ") for e in events), write
    raw = [e.removeprefix("data: ") for e in events]
    return [r if r == "[DONE]" else json.loads(r) for r in raw]


async def test_the_role_goes_with_the_first_delta_and_the_end_in_one_write() -> None:
    sent = await writes(StreamDelta(text="Hel"), StreamDelta(text="lo"), END)

    assert len(sent) == 3
    opening, first = data(sent[0])
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["delta"] == {"content": "Hel"}
    [second] = data(sent[1])
    assert second["choices"][0]["delta"] == {"content": "lo"}
    finish, usage, done = data(sent[2])
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }  # fmt: skip
    assert done == "[DONE]"


async def test_without_usage_the_end_is_the_finish_reason_and_done() -> None:
    sent = await writes(StreamDelta(text="Hi"), END, usage=False)

    assert len(sent) == 2
    finish, done = data(sent[1])
    assert "usage" not in finish
    assert done == "[DONE]"


async def test_a_reply_that_ends_at_once_is_one_write() -> None:
    [sent] = await writes(END)

    opening, finish, usage, done = data(sent)
    assert opening["choices"][0]["delta"]["role"] == "assistant"
    assert usage["usage"]["total_tokens"] == 5
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert done == "[DONE]"


async def test_a_tool_call_first_opens_with_null_content() -> None:
    call = ToolCallDelta(index=0, id="call_1", name="now", arguments="")
    sent = await writes(call, END)

    opening, first = data(sent[0])
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "now"


async def test_an_error_after_the_first_delta_is_an_error_chunk_and_no_done() -> None:
    sent = await writes(StreamDelta(text="Hel"), fail=True)

    assert len(sent) == 2
    assert len(data(sent[0])) == 2  # the role and the first delta went out first
    [error] = data(sent[1])
    assert error["error"]["message"] == "The provider failed."
    assert "[DONE]" not in "".join(sent)


async def test_the_last_write_is_marked_to_go_with_the_end_of_the_body() -> None:
    completion = _Completion("chatcmpl-1", 0, "dev/echo", include_usage=True)
    ok = [w async for w in _sse(completion, StreamDelta(text="a"), _events(END))]
    failed = [w async for w in _sse(completion, StreamDelta(text="a"), _events(fail=True))]

    # (LastChunk: sent with the chunked body's terminator, in one write)
    assert [type(w) for w in ok] == [bytes, LastChunk]
    assert [type(w) for w in failed] == [bytes, LastChunk]
    assert b"[DONE]" in ok[-1]
    assert b'"error"' in failed[-1]
