"""The worker's periodic sweep: one run per interval across workers, failures do not stop it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.clock import ManualClock
from whalli.entrypoints.worker.sweeper import run_periodically
from whalli.ports.cache import Cache


def shared(cache: Cache) -> Callable[[], Awaitable[Cache]]:
    async def get() -> Cache:
        return cache

    return get


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail("the condition never held")


async def test_two_workers_sweep_once_per_interval_between_them() -> None:
    clock = ManualClock()
    cache = InMemoryCache(clock)
    runs: list[str] = []

    def sweeper(name: str) -> asyncio.Task[None]:
        async def sweep() -> None:
            runs.append(name)

        return asyncio.create_task(
            run_periodically(sweep, shared(cache), interval_s=0.001, lock_key="sweep:test")
        )

    tasks = [sweeper("a"), sweeper("b")]
    try:
        await until(lambda: len(runs) == 1)
        for _ in range(20):  # many ticks of both, all within the same (frozen) interval
            await asyncio.sleep(0.002)
        assert len(runs) == 1
        clock.advance(1)  # the claim expires with the interval
        await until(lambda: len(runs) == 2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)


async def test_a_failing_sweep_is_tried_again_at_the_next_interval() -> None:
    clock = ManualClock()
    cache = InMemoryCache(clock)
    attempts: list[int] = []

    async def sweep() -> None:
        attempts.append(1)
        clock.advance(1)  # the next tick may claim again
        raise RuntimeError("the database is down")

    task = asyncio.create_task(
        run_periodically(sweep, shared(cache), interval_s=0.001, lock_key="sweep:failing")
    )
    try:
        await until(lambda: len(attempts) >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
