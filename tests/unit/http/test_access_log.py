from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from whalli.adapters.structlog.logging import configure_logging, reset_logging


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    configure_logging("info", str(tmp_path))
    yield tmp_path / "whalli.log"
    reset_logging()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_every_line_of_a_request_carries_its_request_id_and_no_secret(
    client: AsyncTestClient[Litestar], log_file: Path
) -> None:
    await client.get("/api/test/log", headers={"X-Request-ID": "req-42"})

    handler_line, access_line = _lines(log_file)
    assert handler_line["request_id"] == access_line["request_id"] == "req-42"
    assert handler_line["url"] == "postgres://***@db.internal:5432/whalli"
    assert handler_line["password"] == handler_line["api_key"] == "***"
    assert handler_line["headers"] == {"Authorization": "***", "accept": "text/html"}
    assert handler_line["max_tokens"] == 512
    assert "hunter2" not in log_file.read_text()
    assert "sk-live-123" not in log_file.read_text()


async def test_one_access_line_per_request_names_the_route_template_status_and_duration(
    client: AsyncTestClient[Litestar], log_file: Path
) -> None:
    await client.get("/api/test/items/5")
    await client.get("/api/missing")

    found, missing = _lines(log_file)
    assert found["event"] == missing["event"] == "request"
    assert found["logger"] == "whalli.access"
    assert (found["method"], found["route"], found["status"]) == (
        "GET",
        "/api/test/items/{item_id:int}",
        200,
    )
    assert (missing["route"], missing["status"]) == ("unmatched", 404)
    assert found["duration_ms"] >= 0


async def test_an_unhandled_exception_is_logged_with_its_traceback_redacted(
    client: AsyncTestClient[Litestar], log_file: Path
) -> None:
    await client.get("/api/test/boom", headers={"X-Request-ID": "req-500"})

    error, access = _lines(log_file)
    assert error["level"] == "error"
    assert error["request_id"] == "req-500"
    assert "RuntimeError: boom at postgres://***@db.internal/whalli" in error["exception"]
    assert "hunter2" not in log_file.read_text()
    assert access["status"] == 500


async def test_the_request_id_does_not_leak_into_lines_after_the_request(
    client: AsyncTestClient[Litestar], log_file: Path
) -> None:
    await client.get("/api/health", headers={"X-Request-ID": "req-1"})
    await client.get("/api/health")

    first, second = _lines(log_file)
    assert first["request_id"] == "req-1"
    assert second["request_id"] != "req-1"
