from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai._http import error_code, retry_after, status_error
from whalli.adapters.ai._streaming import stream_with_retries
from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.domain.model.chats import GenerationParams, MessageRole, TokenUsage
from whalli.ports.chat_model import (
    CompletionRequest,
    PromptMessage,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)


def test_backoff_grows_exponentially_with_jitter_up_to_its_maximum() -> None:
    policy = StreamPolicy(backoff_base=1.0, backoff_max=5.0)

    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.delay(attempt) <= ceiling


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    policy = StreamPolicy(retry_after_cap=10.0)

    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=600.0) == 10.0


@pytest.mark.parametrize(
    "change", [{"max_attempts": 0}, {"idle_timeout": 0}, {"backoff_base": -1.0}]
)
def test_a_policy_refuses_impossible_settings(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|cannot"):
        StreamPolicy(**change)  # type: ignore[arg-type]


def test_retry_after_reads_milliseconds_seconds_and_dates() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    from_date = retry_after({"retry-after": later})

    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "7"}) == 7.0
    assert from_date is not None
    assert 0 < from_date <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_only_short_machine_codes_of_an_upstream_error_are_kept() -> None:
    assert error_code(b'{"error": {"code": "invalid_api_key", "message": "sk-1"}}') == (
        "invalid_api_key"
    )
    assert error_code(b'{"type": "error", "error": {"type": "overloaded_error"}}') == (
        "overloaded_error"
    )
    assert error_code(b'{"error": {"code": "key sk-123 is wrong"}}') == ""
    assert error_code(b"<html>Bad gateway</html>") == ""


def test_statuses_map_to_retryable_and_final_errors() -> None:
    assert status_error("openai", 429, {"retry-after": "2"}, b"").retryable
    assert status_error("openai", 429, {"retry-after": "2"}, b"").details["retry_after"] == 2.0
    assert status_error("openai", 529, {}, b"").retryable
    assert not status_error("openai", 400, {}, b"").retryable
    assert not status_error("openai", 404, {}, b"").retryable


def request(text: str, max_tokens: int | None = None) -> CompletionRequest:
    return CompletionRequest(
        model="echo",
        messages=(
            PromptMessage(role=MessageRole.USER, content="first question"),
            PromptMessage(role=MessageRole.ASSISTANT, content="an answer"),
            PromptMessage(role=MessageRole.USER, content=text),
        ),
        params=GenerationParams(max_tokens=max_tokens),
    )


async def echo(req: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in DevEchoChatModel().stream(req)]


async def test_dev_echo_streams_the_last_user_message_back_word_by_word() -> None:
    events = await echo(request("  Hello\n  brave new\tworld "))

    assert events[:-1] == [
        StreamDelta(text="  Hello\n  "),
        StreamDelta(text="brave "),
        StreamDelta(text="new\t"),
        StreamDelta(text="world "),
    ]
    assert events[-1] == StreamEnd(
        finish_reason="stop", usage=TokenUsage(prompt_tokens=8, completion_tokens=4)
    )


async def test_dev_echo_stops_at_max_tokens_with_finish_reason_length() -> None:
    events = await echo(request("one two three", max_tokens=2))

    assert [e.text for e in events if isinstance(e, StreamDelta)] == ["one ", "two "]
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "length"


def test_dev_echo_is_the_dev_provider() -> None:
    assert DevEchoChatModel().provider == "dev"


async def test_nothing_is_read_after_the_end_of_a_stream() -> None:
    """An attempt that would wait after its end (a connection left open) is closed at its end,
    never read again: no idle timeout can spoil the complete answer."""
    closed: list[bool] = []

    async def attempt() -> AsyncGenerator[StreamEvent, None]:
        try:
            yield StreamDelta(text="Hi")
            yield StreamEnd(finish_reason="stop", usage=TokenUsage())
            await asyncio.Event().wait()  # a read after the end would wait here
        finally:
            closed.append(True)

    policy = StreamPolicy(idle_timeout=0.05)
    events = [e async for e in stream_with_retries(attempt, provider="p", policy=policy)]

    assert events == [StreamDelta(text="Hi"), StreamEnd(finish_reason="stop", usage=TokenUsage())]
    assert closed == [True]
