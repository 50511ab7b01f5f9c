"""Chat starts run a few at a time, in the order they came, when they come together.

A burst of starts (a team's browsers, a client's parallel requests) all run on the process's
one event loop. Each start is a few steps of Python between round trips (the caller, the
INSERT, the session, the reply's launch), and the loop takes the steps of every start in turn:
so every start of the burst ends near the burst's end, and every one of their replies begins
that late. Run a few at a time in arrival order, the first ones end (and their replies begin)
first, for the same work: the burst's mean wait is about halved, and the last one waits no
longer than before.

``StartGate`` admits ``slots`` starts at once; the others wait their turn, each at most
``max_wait_s``, then go in anyway: a start that holds its slot long (a slow database) delays
the others by that much at most, never more. A start that may wait for long by design (one
naming files, which waits for their extraction) goes in at once without a slot
(``turn(queue=False)``), so that it holds nobody up. Without slots (``0``) every start goes in
at once, as before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class StartGate:
    """At most ``slots`` holders at once; the others wait in arrival order (see above)."""

    def __init__(
        self, slots: int, max_wait_s: float, on_wait: Callable[[bool], None] | None = None
    ) -> None:
        """``on_wait`` is told how each wait ended: True, a turn; False, its longest wait was
        over (a metric: many of those, and the slots are too few or held long)."""
        if slots < 0 or max_wait_s < 0:
            raise ValueError("slots and max_wait_s must not be negative")
        self._slots, self._max_wait, self._on_wait = slots, max_wait_s, on_wait
        self._held = 0
        # each waiter's future: True once a leaving holder hands it a slot, False once its
        # wait is over without one (it goes in anyway)
        self._waiting: deque[asyncio.Future[bool]] = deque()

    @property
    def held(self) -> int:
        return self._held

    async def enter(self) -> bool:
        """Wait for a turn; True if it holds a slot, which ``leave`` must give back."""
        if self._held < self._slots:
            self._held += 1
            return True
        if not self._slots:
            return False
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(turn)
        timer = loop.call_later(self._max_wait, _over, turn)
        try:
            got = await turn
        except asyncio.CancelledError:
            # a slot handed over just as its waiter was cancelled goes to the next one
            if turn.done() and not turn.cancelled() and turn.result():
                self.leave()
            raise
        finally:
            timer.cancel()
        if self._on_wait is not None:
            # only told: its failure must neither fail the start nor keep the slot it holds
            try:
                self._on_wait(got)
            except Exception:
                log.warning("chat_start_wait_not_reported", exc_info=True)
        return got

    def turn(self, *, queue: bool = True) -> Turn:
        """``async with gate.turn():`` enters, and leaves on the way out; ``queue=False``:
        goes in at once, holding no slot (and waiting for none)."""
        return Turn(self if queue else None)

    def leave(self) -> None:
        """Give a slot back: to the longest waiter still waiting, or free."""
        waiting = self._waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self._held -= 1


class Turn:
    __slots__ = ("_gate", "_held")

    def __init__(self, gate: StartGate | None) -> None:
        self._gate, self._held = gate, False

    async def __aenter__(self) -> None:
        if self._gate is not None:
            self._held = await self._gate.enter()

    async def __aexit__(self, *_: object) -> None:
        if self._held and self._gate is not None:
            self._held = False
            self._gate.leave()


def _over(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)
