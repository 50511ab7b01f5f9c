"""uvicorn's httptools protocol, holding less per open connection (``whalli serve`` uses it).

Per connection uvicorn keeps two ``asyncio.Event``s (flow control, and the request's message
event) and a ``deque`` for pipelined requests. CPython keeps an event's waiters in a ``deque``
too, and an empty deque is ~600 bytes (its first block): ~1.9 KiB of a connection that holds
nothing, under every open SSE stream. Here the waiters are a list (an event of a connection
has at most one waiter at a time) and the pipeline a list (pipelining is rare; uvicorn only
``appendleft``s to it, ``pop``s from it and tests whether it is empty).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class LeanEvent(asyncio.Event):
    """``asyncio.Event`` with its waiters in a list (CPython's ``Event`` only appends to it,
    removes from it and iterates it; a test pins that)."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: Any = []


class _Pipeline(list[Any]):
    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = _Pipeline()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = LeanEvent()
        writable.set()  # as FlowControl starts: writable
        self.flow._is_writable_event = writable

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        # A new request's event (none when the callback returned early, for an upgrade): no
        # one waited on it or set it yet (its task starts after this callback, and the body's
        # callbacks come after it).
        if self.cycle is not None and self.cycle is not before:
            self.cycle.message_event = LeanEvent()
