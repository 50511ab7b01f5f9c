from __future__ import annotations

import json
import logging
import os
import time
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

import pytest
import structlog

from whalli.adapters.structlog.logging import (
    SharedTimedRotatingFileHandler,
    configure_logging,
)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _own_handlers() -> list[logging.Handler]:
    # pytest adds capture handlers of its own to the root logger; count only ours.
    return [h for h in logging.getLogger().handlers if type(h).__module__.startswith("whalli.")]


def test_structlog_lines_are_json_in_the_log_file_with_secrets_redacted(tmp_path: Path) -> None:
    configure_logging("info", str(tmp_path), process_name="worker")

    structlog.get_logger("whalli.test").info(
        "connecting", url="postgres://whalli:hunter2@db/whalli", password="hunter2", attempt=2
    )

    (line,) = _lines(tmp_path / "whalli.log")
    assert line["event"] == "connecting"
    assert line["url"] == "postgres://***@db/whalli"
    assert line["password"] == "***"
    assert line["attempt"] == 2
    assert line["level"] == "info"
    assert line["logger"] == "whalli.test"
    assert line["process"] == "worker"
    assert line["pid"] == os.getpid()
    assert "timestamp" in line
    assert "hunter2" not in (tmp_path / "whalli.log").read_text()


def test_stdout_gets_the_same_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", None)

    structlog.get_logger("whalli.test").info("hello", api_key="sk-123")

    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["event"] == "hello"
    assert line["api_key"] == "***"


def test_stdout_can_be_human_readable_while_the_file_stays_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", str(tmp_path), json=False)

    structlog.get_logger("whalli.test").info("hello", token="abc")

    out = capsys.readouterr().out
    assert "hello" in out
    assert "abc" not in out
    assert _lines(tmp_path / "whalli.log")[0]["token"] == "***"


@pytest.mark.parametrize("name", ["uvicorn.error", "litestar", "dramatiq.worker.WorkerThread"])
def test_stdlib_loggers_of_the_servers_share_the_json_formatter(tmp_path: Path, name: str) -> None:
    configure_logging("info", str(tmp_path))
    structlog.contextvars.bind_contextvars(request_id="rid-7")
    try:
        logging.getLogger(name).warning("lost %s at redis://:pw@cache", "connection")
    finally:
        structlog.contextvars.clear_contextvars()

    (line,) = _lines(tmp_path / "whalli.log")
    assert line["event"] == "lost connection at redis://***@cache"
    assert line["logger"] == name
    assert line["level"] == "warning"
    assert line["request_id"] == "rid-7"


def test_lines_below_the_level_are_dropped(tmp_path: Path) -> None:
    configure_logging("warning", str(tmp_path))

    structlog.get_logger("whalli.test").info("quiet")
    logging.getLogger("dramatiq").info("quiet too")
    structlog.get_logger("whalli.test").error("loud")

    assert [line["event"] for line in _lines(tmp_path / "whalli.log")] == ["loud"]


def test_exception_tracebacks_are_logged_with_credentials_masked(tmp_path: Path) -> None:
    configure_logging("info", str(tmp_path))

    try:
        raise ConnectionError("cannot reach postgres://whalli:hunter2@db/whalli")
    except ConnectionError:
        structlog.get_logger("whalli.test").exception("query failed")

    (line,) = _lines(tmp_path / "whalli.log")
    assert "Traceback" in line["exception"]
    assert "postgres://***@db/whalli" in line["exception"]
    assert "hunter2" not in line["exception"]


def test_configuring_twice_does_not_duplicate_handlers_or_lines(tmp_path: Path) -> None:
    configure_logging("info", str(tmp_path))
    configure_logging("info", str(tmp_path))

    structlog.get_logger("whalli.test").info("once")

    assert len(_own_handlers()) == 2
    assert len(_lines(tmp_path / "whalli.log")) == 1


def test_the_log_file_rotates_at_midnight_keeping_seven_days(tmp_path: Path) -> None:
    configure_logging("info", str(tmp_path / "logs"))

    (handler,) = [h for h in _own_handlers() if isinstance(h, TimedRotatingFileHandler)]
    assert handler.when == "MIDNIGHT"
    assert handler.backupCount == 7
    assert handler.baseFilename == str(tmp_path / "logs" / "whalli.log")


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", None)


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)


def test_a_second_process_crossing_midnight_keeps_the_day_the_first_one_rotated(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "whalli.log")
    first = SharedTimedRotatingFileHandler(path, when="midnight", backupCount=7)
    second = SharedTimedRotatingFileHandler(path, when="midnight", backupCount=7)
    try:
        first.emit(_record("first, yesterday"))
        second.emit(_record("second, yesterday"))
        # Both processes now pass the same (past) midnight.
        midnight = first.computeRollover(int(time.time())) - first.interval
        first.rolloverAt = second.rolloverAt = midnight

        first.emit(_record("first, today"))
        second.emit(_record("second, today"))
    finally:
        first.close()
        second.close()

    rotated = sorted(tmp_path.glob("whalli.log.*"))
    assert len(rotated) == 1
    assert rotated[0].read_text().splitlines() == ["first, yesterday", "second, yesterday"]
    assert (tmp_path / "whalli.log").read_text().splitlines() == ["first, today", "second, today"]
