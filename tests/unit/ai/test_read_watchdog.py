"""The first-token and idle limits on provider reads (``_streaming._timed`` and its
``ReadWatchdog``): a read is cut when it alone outlasts its limit, never for the stream's
total time, and a cancellation from elsewhere stays a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai._streaming import ReadWatchdog, stream_with_retries
from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import StreamDelta, StreamEnd, StreamEvent

END = StreamEnd(finish_reason="stop", usage=TokenUsage())


def _provider(
    gaps: list[float], hang: asyncio.Event | None = None
) -> AsyncGenerator[StreamEvent, None]:
    async def attempt() -> AsyncGenerator[StreamEvent, None]:
        for number, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            yield StreamDelta(text=f"t{number}")
        if hang is not None:
            await hang.wait()
        yield END

    return attempt()


async def _read(policy: StreamPolicy, gaps: list[float], hang: asyncio.Event | None = None) -> int:
    deltas = 0
    stream = stream_with_retries(
        lambda: _provider(gaps, hang), provider="fake", policy=policy, sleep=asyncio.sleep
    )
    async for event in stream:
        deltas += isinstance(event, StreamDelta)
    return deltas


async def test_a_stream_longer_than_the_idle_limit_is_not_cut_while_each_gap_is_short() -> None:
    # 12 gaps of 0.1 s: 1.2 s in all, more than the 1 s limit; each gap a tenth of it (margin
    # for a loaded machine's late wake-ups).
    policy = StreamPolicy(first_token_timeout=1.0, idle_timeout=1.0, max_attempts=1)
    assert await _read(policy, [0.1] * 12) == 12


async def test_a_gap_longer_than_the_idle_limit_cuts_the_stream_though_the_first_limit_is_long(
) -> None:  # fmt: skip
    # The first token's limit (an hour) armed the timer; the idle limit must still apply.
    policy = StreamPolicy(first_token_timeout=3600, idle_timeout=0.1, max_attempts=1)
    with pytest.raises(ProviderError) as raised:
        async with asyncio.timeout(10):
            await _read(policy, [0.0], hang=asyncio.Event())
    assert raised.value.details["kind"] == "timeout"
    assert "the next token" in str(raised.value)


async def test_a_slow_first_token_is_cut_and_the_task_is_not_left_cancelled() -> None:
    policy = StreamPolicy(first_token_timeout=0.1, max_attempts=3)
    with pytest.raises(ProviderError) as raised:
        await _read(policy, [3600.0])
    assert raised.value.details["kind"] == "timeout"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # the absorbed cancellation does not strike later


async def test_a_cancellation_from_elsewhere_during_a_read_stays_a_cancellation() -> None:
    policy = StreamPolicy(first_token_timeout=3600, idle_timeout=3600, max_attempts=1)
    reading = asyncio.create_task(_read(policy, [0.0], hang=asyncio.Event()))
    await asyncio.sleep(0.05)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading


async def test_a_watchdog_that_fired_along_with_another_cancellation_lets_that_one_through(
) -> None:  # fmt: skip
    verdicts: list[bool] = []

    async def read_once() -> None:
        watchdog = ReadWatchdog()
        watchdog.arm(0.0)  # due at once: fires in the next turn...
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_soon(task.cancel)  # ...as a stop arrives
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            verdicts.append(watchdog.expired())
            raise
        finally:
            watchdog.close()

    reading = asyncio.create_task(read_once())
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert verdicts == [False]  # not absorbed as a timeout: the stop goes on


def test_a_watchdog_belongs_to_a_task() -> None:
    with pytest.raises(RuntimeError):
        ReadWatchdog()


async def test_a_stream_read_first_by_one_task_then_another_is_still_cut_when_idle() -> None:
    # /v1 awaits the first event in a task of its own and reads the rest in the request's: the
    # idle limit must cut the read of the task reading now, not the one that read first.
    policy = StreamPolicy(first_token_timeout=3600, idle_timeout=0.1, max_attempts=1)
    stream = stream_with_retries(
        lambda: _provider([0.0], hang=asyncio.Event()),
        provider="fake",
        policy=policy,
        sleep=asyncio.sleep,
    )
    first = await asyncio.ensure_future(anext(stream))
    assert first == StreamDelta(text="t0")
    reading = asyncio.ensure_future(anext(stream))
    # a guard against a hang, not a timing limit: without the cut the read never ends
    done, _ = await asyncio.wait((reading,), timeout=30)
    assert reading in done, "the idle read was never cut"
    with pytest.raises(ProviderError) as raised:
        reading.result()
    assert raised.value.details["kind"] == "timeout"
    await stream.aclose()
