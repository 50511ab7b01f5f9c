"""Consuming a provider stream next to the stop poller."""

from __future__ import annotations

import asyncio

from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.services.chat.streaming import StopWatch, stream_until_stopped
from whalli.ports.chat_model import CompletionRequest, StreamEnd

REQUEST = CompletionRequest(
    model="m", messages=(PromptMessage(role=MessageRole.USER, content="hi"),)
)


class SwallowingStream(InMemoryReplyStream):
    """A store whose poll absorbs a cancellation, as a driver caught mid-command can."""

    async def stop_requested(self, session_id: str) -> bool:
        try:
            await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            return False
        return False


async def test_the_reply_ends_even_when_the_stop_poll_absorbs_cancellation() -> None:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)
        await asyncio.sleep(0.01)  # let the poller run mid-command when the stream ends

    stream = SwallowingStream(ManualClock())
    watch = StopWatch(stream, "s" * 43, poll_s=0.001)
    end = await asyncio.wait_for(
        stream_until_stopped(ScriptedChatModel(["a", "b", "c"]), REQUEST, on_delta, watch),
        timeout=10,
    )
    assert isinstance(end, StreamEnd)
    assert deltas == ["a", "b", "c"]


async def test_a_stop_request_ends_the_stream_with_none() -> None:
    stream = InMemoryReplyStream(ManualClock())
    session = "t" * 43
    started = asyncio.Event()

    async def on_delta(text: str) -> None:
        started.set()
        await stream.request_stop(session, 60)
        await asyncio.sleep(1)  # a slow consumer: the stop must win

    watch = StopWatch(stream, session, poll_s=0.01)
    end = await asyncio.wait_for(
        stream_until_stopped(ScriptedChatModel(["a", "b"]), REQUEST, on_delta, watch), timeout=10
    )
    assert end is None
    assert started.is_set()
