"""``ShutdownDrain``: the first SIGTERM marks the process draining and reaches the server's own
handler only after the period; a second one, or SIGINT, at once. Real signals, sent to this
process, with a recording handler standing for uvicorn's."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from whalli.config import ConfigError, Settings
from whalli.entrypoints.http.draining import ShutdownDrain


class ServerHandler:
    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        self.calls.append((sig, asyncio.get_running_loop().time()))


@pytest.fixture
def server_handler() -> Iterator[ServerHandler]:
    handler = ServerHandler()
    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield handler
    for sig, original in before.items():
        signal.signal(sig, original)


async def _until(predicate: object, seconds: float = 3.0) -> None:
    assert callable(predicate)
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


def test_sigterm_is_handed_to_the_server_after_the_drain_period(
    server_handler: ServerHandler,
) -> None:
    async def scenario() -> None:
        drain = ShutdownDrain(0.3)
        drain.install()
        loop = asyncio.get_running_loop()
        sent = loop.time()
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: drain.draining)
        assert drain.draining
        assert server_handler.calls == []  # still serving
        await _until(lambda: server_handler.calls)
        assert [sig for sig, _ in server_handler.calls] == [signal.SIGTERM]
        assert server_handler.calls[0][1] - sent >= 0.3

    asyncio.run(scenario())


def test_a_second_sigterm_stops_at_once(server_handler: ServerHandler) -> None:
    async def scenario() -> None:
        drain = ShutdownDrain(30)
        drain.install()
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: drain.draining)
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: server_handler.calls)
        assert [sig for sig, _ in server_handler.calls] == [signal.SIGTERM]

    asyncio.run(scenario())


def test_sigint_is_not_drained(server_handler: ServerHandler) -> None:
    async def scenario() -> None:
        drain = ShutdownDrain(30)
        drain.install()
        os.kill(os.getpid(), signal.SIGINT)
        await _until(lambda: server_handler.calls)
        assert [sig for sig, _ in server_handler.calls] == [signal.SIGINT]
        assert not drain.draining

    asyncio.run(scenario())


def test_without_a_period_the_server_handler_stays(server_handler: ServerHandler) -> None:
    async def scenario() -> None:
        ShutdownDrain(0).install()
        assert signal.getsignal(signal.SIGTERM) is server_handler

    asyncio.run(scenario())


@pytest.mark.parametrize("value", [-1.0, 301.0])
def test_the_period_is_bounded(value: float) -> None:
    with pytest.raises(ConfigError, match="SHUTDOWN_DRAIN_S"):
        Settings(shutdown_drain_s=value)
