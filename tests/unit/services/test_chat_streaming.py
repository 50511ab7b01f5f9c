"""Consuming a provider stream under the process's one stop poller."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest

from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.chat.streaming import StopBoard, stream_until_stopped
from whalli.ports.chat_model import CompletionRequest, StreamEnd, ToolCallDelta

REQUEST = CompletionRequest(
    model="m", messages=(PromptMessage(role=MessageRole.USER, content="hi"),)
)


class CountingStream(InMemoryReplyStream):
    """Records the sessions asked about in each poll, and signals every poll."""

    def __init__(self) -> None:
        super().__init__(ManualClock())
        self.polls: list[set[str]] = []
        self.polled = asyncio.Event()

    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        self.polls.append(set(session_ids))
        self.polled.set()
        return await super().stops_requested(session_ids)

    async def next_poll(self) -> None:
        self.polled.clear()
        await asyncio.wait_for(self.polled.wait(), timeout=10)


class HangingStream(InMemoryReplyStream):
    """A store whose stop poll never answers."""

    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        await asyncio.Event().wait()
        return set()


class FailingStream(InMemoryReplyStream):
    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        raise ServiceUnavailable("redis is down")


class Blocked:
    """``on_delta`` that records text and then waits until released (a slow consumer)."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.deltas.append(text)
        self.started.set()
        await self.release.wait()


async def no_wait(text: str) -> None:
    return None


async def test_a_stop_request_ends_the_stream_with_none_and_closes_the_provider() -> None:
    stream = InMemoryReplyStream(ManualClock())
    board = StopBoard(stream, poll_s=0.01)
    model = ScriptedChatModel(["a", "b"])
    consumer = Blocked()
    session = "t" * 43

    reply = asyncio.create_task(stream_until_stopped(model, REQUEST, consumer, board, session))
    await asyncio.wait_for(consumer.started.wait(), timeout=10)
    await stream.request_stop(session, 60)
    end = await asyncio.wait_for(reply, timeout=10)

    assert end is None
    assert consumer.deltas == ["a"]
    assert model.open_streams == 0  # the upstream iterator (its HTTP request) was closed
    assert board.watched == 0
    assert reply.cancelling() == 0  # the stop's cancellation was absorbed, nothing left over


async def test_a_stop_of_another_session_does_not_touch_this_one() -> None:
    stream = CountingStream()
    board = StopBoard(stream, poll_s=0.01)
    consumer = Blocked()
    reply = asyncio.create_task(
        stream_until_stopped(ScriptedChatModel(["a", "b"]), REQUEST, consumer, board, "mine")
    )
    await asyncio.wait_for(consumer.started.wait(), timeout=10)
    await stream.request_stop("someone-else", 60)
    await stream.next_poll()
    await stream.next_poll()  # a whole poll after the other stop, with this reply watched

    consumer.release.set()
    end = await asyncio.wait_for(reply, timeout=10)

    assert isinstance(end, StreamEnd)
    assert consumer.deltas == ["a", "b"]


async def test_one_poll_asks_about_every_watched_reply_at_once() -> None:
    stream = CountingStream()
    board = StopBoard(stream, poll_s=0.01)
    consumers = [Blocked() for _ in range(20)]
    sessions = [f"s{i}" for i in range(20)]
    replies = [
        asyncio.create_task(stream_until_stopped(ScriptedChatModel(["x"]), REQUEST, c, board, s))
        for c, s in zip(consumers, sessions, strict=True)
    ]
    for consumer in consumers:
        await asyncio.wait_for(consumer.started.wait(), timeout=10)
    stream.polls.clear()
    await stream.next_poll()

    assert stream.polls == [set(sessions)]  # one round trip for all twenty, not twenty

    await stream.request_stop(sessions[3], 60)
    await stream.next_poll()
    await stream.next_poll()
    for consumer in consumers:
        consumer.release.set()
    ends = await asyncio.wait_for(asyncio.gather(*replies), timeout=10)

    assert ends[3] is None
    assert all(isinstance(end, StreamEnd) for i, end in enumerate(ends) if i != 3)
    assert board.watched == 0


async def test_the_poller_stops_when_nothing_is_watched_and_starts_again() -> None:
    stream = CountingStream()
    board = StopBoard(stream, poll_s=0.01)
    first = await stream_until_stopped(ScriptedChatModel(["a"]), REQUEST, no_wait, board, "1")
    await asyncio.sleep(0.05)  # a few intervals with nothing watched
    polls_while_idle = len(stream.polls)
    await asyncio.sleep(0.05)

    assert isinstance(first, StreamEnd)
    assert len(stream.polls) == polls_while_idle  # no loop left polling for nobody

    consumer = Blocked()
    session = "2"
    reply = asyncio.create_task(
        stream_until_stopped(ScriptedChatModel(["a", "b"]), REQUEST, consumer, board, session)
    )
    await asyncio.wait_for(consumer.started.wait(), timeout=10)
    await stream.request_stop(session, 60)
    assert await asyncio.wait_for(reply, timeout=10) is None


@pytest.mark.parametrize("stream_type", [HangingStream, FailingStream])
async def test_a_store_that_hangs_or_fails_never_holds_or_aborts_the_reply(
    stream_type: type[InMemoryReplyStream],
) -> None:
    board = StopBoard(stream_type(ManualClock()), poll_s=0.001)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)
        await asyncio.sleep(0.01)  # let the poller run, and hang or fail, mid-reply

    end = await asyncio.wait_for(
        stream_until_stopped(ScriptedChatModel(["a", "b", "c"]), REQUEST, on_delta, board, "s"),
        timeout=10,
    )

    assert isinstance(end, StreamEnd)
    assert deltas == ["a", "b", "c"]


async def test_a_cancellation_from_outside_is_not_taken_for_a_stop() -> None:
    board = StopBoard(InMemoryReplyStream(ManualClock()), poll_s=0.01)
    consumer = Blocked()
    reply = asyncio.create_task(
        stream_until_stopped(ScriptedChatModel(["a"]), REQUEST, consumer, board, "s")
    )
    await asyncio.wait_for(consumer.started.wait(), timeout=10)

    reply.cancel()  # a shutdown
    with pytest.raises(asyncio.CancelledError):
        await reply
    assert board.watched == 0


async def test_an_abandoned_reply_is_stopped_when_configured() -> None:
    stream = InMemoryReplyStream(ManualClock())
    board = StopBoard(stream, poll_s=0.01, abandon_after_s=0.03)
    read, abandoned = Blocked(), Blocked()
    await stream.reader_joined("read", "tab", 60)
    replies = [
        asyncio.create_task(
            stream_until_stopped(ScriptedChatModel(["a", "b"]), REQUEST, c, board, s)
        )
        for c, s in ((read, "read"), (abandoned, "abandoned"))
    ]

    end = await asyncio.wait_for(replies[1], timeout=10)
    read.release.set()

    assert end is None
    assert isinstance(await asyncio.wait_for(replies[0], timeout=10), StreamEnd)


async def test_a_stray_tool_call_piece_is_ignored_and_the_text_kept() -> None:
    # The chat flow offers no tools: a server sending a piece of a tool call anyway (it has no
    # tool to call) shows the reader nothing, and the reply's text and end are as sent.
    stray = [ToolCallDelta(index=0, id="call_1", name="f", arguments="{}")]
    model = ScriptedChatModel(["a", "b"], tool_calls=stray, finish_reason="stop")
    board = StopBoard(InMemoryReplyStream(ManualClock()), poll_s=0.01)
    received: list[str] = []

    async def on_delta(text: str) -> None:
        received.append(text)

    end = await stream_until_stopped(model, REQUEST, on_delta, board, "s" * 43)

    assert received == ["a", "b"]
    assert end == StreamEnd(finish_reason="stop", usage=model.usage)
    assert model.requests[0].tools is None
