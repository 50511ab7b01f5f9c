"""The chat start's admission gate (entrypoints/http/admission.py): a few at a time, in arrival
order, nobody held past the longest wait, no slot lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whalli.entrypoints.http.admission import StartGate

LONG = 60.0  # a wait no test reaches


async def test_up_to_its_slots_go_in_at_once_and_the_next_waits_for_one_to_leave() -> None:
    gate = StartGate(2, LONG)
    assert await gate.enter()
    assert await gate.enter()
    third = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    assert not third.done()

    gate.leave()

    assert await third is True  # the slot was handed over: still two held
    assert gate.held == 2


async def test_waiters_go_in_in_the_order_they_came() -> None:
    gate = StartGate(1, LONG)
    order: list[int] = []

    async def start(n: int) -> None:
        async with gate.turn():
            order.append(n)
            await asyncio.sleep(0.001)  # a round trip: the others are queued meanwhile

    await asyncio.gather(*(start(n) for n in range(8)))

    assert order == list(range(8))
    assert gate.held == 0


async def test_a_burst_ends_one_by_one_rather_than_all_together() -> None:
    """What the gate is for: with the loop taking every start's steps in turn, each of a
    burst's starts ends near the burst's end; one at a time, the first ends first."""

    async def burst(gate: StartGate) -> list[int]:
        ended: list[int] = []
        ticks = 0

        async def start(n: int) -> None:
            nonlocal ticks
            async with gate.turn():
                for _ in range(5):  # five steps between round trips
                    await asyncio.sleep(0)
                    ticks += 1
                ended.append(ticks)

        await asyncio.gather(*(start(n) for n in range(4)))
        return ended

    ungated, gated = await burst(StartGate(0, LONG)), await burst(StartGate(1, LONG))

    assert ungated == [17, 18, 19, 20]  # every one ends with the burst
    assert gated == [5, 10, 15, 20]  # the same work, ended in turn


async def test_a_waiter_goes_in_without_a_slot_once_its_longest_wait_is_over() -> None:
    gate = StartGate(1, 0.01)
    assert await gate.enter()  # held, and never given back here

    assert await asyncio.wait_for(gate.enter(), 5) is False  # in anyway, holding nothing

    gate.leave()  # the holder leaves: the waiter that went in took nothing to give back
    assert gate.held == 0


async def test_a_cancelled_waiter_takes_no_slot_with_it() -> None:
    gate = StartGate(1, LONG)
    assert await gate.enter()
    gone = asyncio.ensure_future(gate.enter())
    after = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)

    gone.cancel()
    gate.leave()

    assert await after is True
    assert gone.cancelled()
    assert gate.held == 1


async def test_a_slot_handed_to_a_waiter_cancelled_before_it_resumed_goes_to_the_next() -> None:
    gate = StartGate(1, LONG)
    assert await gate.enter()
    gone = asyncio.ensure_future(gate.enter())
    after = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)

    gate.leave()  # hands the slot to ``gone`` ...
    gone.cancel()  # ... which is cancelled before it runs again

    assert await after is True
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert gate.held == 1


async def test_a_turn_leaves_when_its_body_raises() -> None:
    gate = StartGate(1, LONG)
    with pytest.raises(RuntimeError):
        async with gate.turn():
            raise RuntimeError("the start failed")

    assert gate.held == 0
    assert await gate.enter() is True


async def test_without_slots_everyone_goes_in_at_once() -> None:
    gate = StartGate(0, LONG)
    assert [await gate.enter() for _ in range(3)] == [False, False, False]
    assert gate.held == 0


@pytest.mark.parametrize(("slots", "wait"), [(-1, 0.0), (1, -0.1)])
def test_a_negative_setting_is_refused(slots: int, wait: float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        StartGate(slots, wait)


@settings(max_examples=60, deadline=None)
@given(
    slots=st.integers(min_value=1, max_value=4),
    plan=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=12),
)
def test_never_more_holders_than_slots_and_every_slot_comes_back(
    slots: int, plan: list[tuple[int, bool]]
) -> None:
    """Any mix of starts (each some steps long, some cancelled while they wait): at most
    ``slots`` inside at once, and none held once all are over."""

    async def run() -> None:
        gate = StartGate(slots, LONG)
        inside = most = 0

        async def start(steps: int) -> None:
            nonlocal inside, most
            async with gate.turn():
                inside += 1
                most = max(most, inside)
                try:
                    for _ in range(steps):
                        await asyncio.sleep(0)
                finally:  # (cancelled inside, too)
                    inside -= 1

        tasks = [asyncio.ensure_future(start(steps)) for steps, _ in plan]
        await asyncio.sleep(0)
        for task, (_, cancel) in zip(tasks, plan, strict=True):
            if cancel:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert most <= slots
        assert gate.held == 0

    asyncio.run(run())


async def test_each_wait_is_reported_with_how_it_ended() -> None:
    ended: list[bool] = []
    gate = StartGate(1, 0.01, on_wait=ended.append)
    assert await gate.enter()  # no wait: nothing reported
    assert await gate.enter() is False  # its longest wait over
    turn = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)

    gate.leave()

    assert await turn is True
    assert ended == [False, True]
