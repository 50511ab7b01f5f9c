"""A reply's SSE frames: the final event is marked to go with the end of the body."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Any, cast

from whalli.domain.model.replies import DoneEvent, TokenEvent
from whalli.domain.services.chat.read_reply import ReadReplyHandler
from whalli.entrypoints.http.lean_stream import LastChunk
from whalli.entrypoints.http.reply_events import reply_frames

DONE = DoneEvent(
    message_id=uuid.uuid4(), cached=False, prompt_tokens=1, completion_tokens=1,
    finish_reason="stop", cost_usd=0.0, status="complete",
)  # fmt: skip


class Reader:
    """The reader's ``events``, as batches given by the test; notes when it is closed."""

    def __init__(self, *batches: Any) -> None:
        self.batches, self.closed = batches, False

    async def events(self, session_id: str, after: str | None) -> AsyncGenerator[Any, None]:
        try:
            for batch in self.batches:
                yield batch
        finally:
            self.closed = True


def frames(reader: Reader) -> AsyncGenerator[bytes, None]:
    return cast(Any, reply_frames(cast(ReadReplyHandler, reader), "s", None, b"retry: 1\n\n"))


async def test_the_batch_with_the_final_event_is_the_last_chunk() -> None:
    reader = Reader(
        [("1-0", TokenEvent(delta="a"))], None, [("2-0", TokenEvent(delta="b")), ("3-0", DONE)]
    )
    stream = frames(reader)
    sent = [await anext(stream) for _ in range(4)]

    assert [type(s) for s in sent] == [bytes, bytes, bytes, LastChunk]
    assert b"event: done" in sent[-1]
    assert b"event: token" in sent[-1]
    await stream.aclose()  # as the sender does after a LastChunk
    assert reader.closed  # at once, not when collected (its bookkeeping runs there)


async def test_a_stream_without_a_final_event_has_no_last_chunk() -> None:
    reader = Reader([("1-0", TokenEvent(delta="a"))])
    sent = [chunk async for chunk in frames(reader)]

    assert [type(s) for s in sent] == [bytes, bytes]
    assert reader.closed
