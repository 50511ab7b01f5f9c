"""The embedded stack's lifecycle, on a throwaway stack of its own (Redis only, for speed)."""

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from whalli.adapters.embedded.process import pid_alive
from whalli.adapters.embedded.redis import EmbeddedRedis
from whalli.adapters.embedded.stack import EmbeddedStack


@pytest.fixture
def redis_only_stack(tmp_path: Path):
    stack = EmbeddedStack(tmp_path / "stack", fast=True)
    stack.servers = [s for s in stack.servers if isinstance(s, EmbeddedRedis)]
    yield stack
    stack.down()


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()


def test_up_is_idempotent_and_reuses_the_running_server(redis_only_stack: EmbeddedStack) -> None:
    _, started = redis_only_stack.up()
    pid = redis_only_stack._read_state()["redis"]["pid"]
    _, started_again = redis_only_stack.up()
    assert started == ["redis"]
    assert started_again == []
    assert redis_only_stack._read_state()["redis"]["pid"] == pid


def test_down_stops_exactly_what_up_started(redis_only_stack: EmbeddedStack) -> None:
    redis_only_stack.up()
    pid = redis_only_stack._read_state()["redis"]["pid"]
    assert redis_only_stack.down() == ["redis"]
    deadline = time.monotonic() + 10
    while pid_alive(pid, "redis-server") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid, "redis-server")
    assert redis_only_stack.status()["redis"][0] is False


def test_a_crashed_server_is_recovered_on_the_next_up(redis_only_stack: EmbeddedStack) -> None:
    urls, _ = redis_only_stack.up()
    pid = redis_only_stack._read_state()["redis"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid, "redis-server") and time.monotonic() < deadline:
        time.sleep(0.05)
    # the stale pid file is still there; up must notice and start a fresh server
    urls, started = redis_only_stack.up()
    assert started == ["redis"]
    assert _ping(urls.redis_url)


def test_status_reports_urls_without_starting_anything(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path / "never-started")
    assert all(running is False for running, _ in stack.status().values())
    assert stack.urls() is None


def test_the_shared_test_stack_serves_all_three(stack_urls) -> None:
    assert stack_urls.database_url.startswith("postgresql://")
    assert _ping(stack_urls.redis_url)
    assert stack_urls.s3_endpoint.startswith("http")
