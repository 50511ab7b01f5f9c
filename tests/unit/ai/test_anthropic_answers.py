"""What the Anthropic adapter reads of a stream's events (``anthropic._Answer``): content a
block carries at its start is its first piece, ``message_delta``'s stop reason ends the answer,
and a whole Messages answer (``anthropic_whole``) reads as the stream that says the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from whalli.adapters.ai._sse import SseEvent
from whalli.adapters.ai.anthropic import _Answer
from whalli.adapters.ai.anthropic_request import FORMAT_TOOL
from whalli.adapters.ai.anthropic_whole import message_events
from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import StreamEnd, StreamReasoning, StreamStart, ToolCallDelta

Read = str | ToolCallDelta | StreamReasoning | StreamStart | None


def event(data: dict[str, Any]) -> SseEvent:
    return SseEvent(str(data["type"]), json.dumps(data))


def start(block: dict[str, Any], index: int = 0) -> SseEvent:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def stop(index: int = 0) -> SseEvent:
    return event({"type": "content_block_stop", "index": index})


def read_all(answer: _Answer, events: list[SseEvent]) -> list[Read]:
    return [read for e in events if (read := answer.read(e)) is not None]


def test_text_at_a_blocks_start_is_its_first_piece() -> None:
    answer = _Answer("anthropic")
    delta = {"type": "text_delta", "text": "world"}
    reads = read_all(
        answer,
        [
            start({"type": "text", "text": "Hello, "}),
            event({"type": "content_block_delta", "index": 0, "delta": delta}),
            stop(),
        ],
    )
    assert reads == ["Hello, ", "world"]


def test_an_empty_blocks_start_adds_nothing() -> None:
    answer = _Answer("anthropic")
    assert read_all(answer, [start({"type": "text", "text": ""}), stop()]) == []
    assert read_all(answer, [start({"type": "thinking", "thinking": ""}, 1), stop(1)]) == []


def test_text_at_a_blocks_start_is_left_out_of_a_formatted_reply_as_its_deltas_are() -> None:
    answer = _Answer("anthropic", formatted=True)
    assert read_all(answer, [start({"type": "text", "text": "Here it is:"}), stop()]) == []


def test_thinking_at_a_blocks_start_is_reasoning() -> None:
    answer = _Answer("anthropic")
    block = {"type": "thinking", "thinking": "Greet first.", "signature": ""}
    assert read_all(answer, [start(block)]) == [StreamReasoning(text="Greet first.")]


def test_a_tools_whole_input_at_its_blocks_start_is_its_arguments_not_an_empty_object() -> None:
    answer = _Answer("anthropic")
    block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}}
    reads = read_all(answer, [start(block, 1), stop(1)])
    assert reads == [
        ToolCallDelta(index=0, id="toolu_1", name="get_weather", arguments='{"city":"P"}')
    ]


def test_a_tool_started_empty_still_gets_the_empty_object_at_its_stop() -> None:
    answer = _Answer("anthropic")
    block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    reads = read_all(answer, [start(block), stop()])
    assert reads == [
        ToolCallDelta(index=0, id="toolu_1", name="get_weather"),
        ToolCallDelta(index=0, arguments="{}"),
    ]


def test_the_format_tools_input_at_its_start_is_the_reply() -> None:
    answer = _Answer("anthropic", formatted=True)
    block = {"type": "tool_use", "id": "toolu_1", "name": FORMAT_TOOL, "input": {"a": 1}}
    assert read_all(answer, [start(block), stop()]) == ['{"a":1}']


def test_message_delta_with_a_stop_reason_ends_the_answer_with_its_counts() -> None:
    """Nothing with content follows it: a connection left silent there (no
    ``message_stop``) holds a complete answer."""
    answer = _Answer("anthropic")
    message = {"type": "message", "usage": {"input_tokens": 9, "output_tokens": 1}}
    answer.read(event({"type": "message_start", "message": message}))
    assert answer.end is None
    answer.read(event({"type": "message_delta", "delta": {"stop_reason": None}}))
    assert answer.end is None
    delta = {"stop_reason": "end_turn"}
    answer.read(event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 4}}))
    assert answer.end == StreamEnd(
        finish_reason="end_turn", usage=TokenUsage(prompt_tokens=9, completion_tokens=4)
    )


def test_a_whole_message_reads_as_its_stream() -> None:
    whole = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [
            {"type": "thinking", "thinking": "Weather, so ask.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}},
            {"type": "redacted_thinking", "data": "xyz"},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 12, "cache_read_input_tokens": 3},
    }  # fmt: skip
    answer = _Answer("anthropic")
    reads = read_all(answer, [SseEvent("message", data) for data in message_events(whole)])
    assert reads == [
        StreamStart(usage=TokenUsage(prompt_tokens=12, cached_prompt_tokens=3)),
        StreamReasoning(text="Weather, so ask."),
        "Checking.",
        ToolCallDelta(index=0, id="toolu_1", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"city":"P"}'),
    ]
    assert answer.end == StreamEnd(
        finish_reason="tool_calls",
        usage=TokenUsage(prompt_tokens=12, completion_tokens=12, cached_prompt_tokens=3),
    )


def test_a_whole_message_without_content_still_ends() -> None:
    whole = {"type": "message", "content": [], "stop_reason": "end_turn", "usage": {}}
    answer = _Answer("anthropic")
    assert read_all(answer, [SseEvent("message", d) for d in message_events(whole)]) == [
        StreamStart(usage=TokenUsage())
    ]
    assert answer.end is not None
    assert answer.end.finish_reason == "end_turn"


def test_an_error_document_reads_as_an_error_event() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    [data] = message_events(error)
    with pytest.raises(ProviderError, match=r"mid-stream \(overloaded_error\)") as raised:
        _Answer("anthropic").read(SseEvent("message", data))
    assert raised.value.retryable
