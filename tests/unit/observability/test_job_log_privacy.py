"""A failed job's log line names the job, not what it carries: a real Dramatiq worker logs a
failure as the message itself (``whalli.run_job('<payload>')``), and payloads hold people's
addresses and chats' titles. Email addresses anywhere in a line keep their domain only."""

from __future__ import annotations

import json
import logging
import smtplib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import structlog
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage

from whalli.adapters.structlog.logging import configure_logging, reset_logging
from whalli.domain.model.jobs import Job, SendPasswordReset, TitleChat, encode_job
from whalli.entrypoints.worker.actors import register

ADDRESS = "alice.liddell@example.org"
TITLE = "Plans for the surprise party"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    configure_logging("info", str(tmp_path), process_name="worker")
    try:
        yield tmp_path / "whalli.log"
    finally:
        reset_logging()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _fail_on_a_worker(job: Job) -> str:
    """Run ``job`` once on a real Dramatiq worker whose handler raises; the message's id."""

    async def dispatch(_job: Job) -> None:
        raise RuntimeError("the handler broke")

    broker = StubBroker(middleware=[CurrentMessage(), AsyncIO()])  # type: ignore[no-untyped-call]
    broker.emit_after("process_boot")
    actor = register(broker, dispatch, queue_name="jobs")
    worker = dramatiq.Worker(broker, worker_timeout=10)
    worker.start()
    try:
        message = actor.send(encode_job(job).decode())
        broker.join("jobs", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    return message.message_id


@pytest.mark.parametrize(
    ("job", "private"),
    [
        (SendPasswordReset(email=ADDRESS, requested_at=datetime.now(UTC)), "alice.liddell"),
        (TitleChat(chat_id=uuid.uuid4(), expected_title=TITLE), TITLE),
    ],
)
def test_a_failed_jobs_line_names_its_actor_and_id_not_its_payload(
    log_file: Path, job: Job, private: str
) -> None:
    message_id = _fail_on_a_worker(job)

    failures = [line for line in _lines(log_file) if "Failed to process message" in line["event"]]
    assert len(failures) == 1, _lines(log_file)
    (failure,) = failures
    assert f"whalli.run_job#{message_id}" in failure["event"]
    assert failure["level"] == "error"
    assert "the handler broke" in failure["exception"]  # the traceback is still there
    assert private not in log_file.read_text(encoding="utf-8")


def test_a_mail_servers_refusal_in_a_traceback_keeps_only_the_domain(log_file: Path) -> None:
    try:
        try:
            raise smtplib.SMTPRecipientsRefused({ADDRESS: (550, f"5.1.1 <{ADDRESS}>".encode())})
        except smtplib.SMTPRecipientsRefused as e:
            raise ConnectionError("The mail server refused the recipient") from e
    except ConnectionError:
        structlog.get_logger("whalli.test").exception("send failed", note=f"to {ADDRESS}")

    (line,) = _lines(log_file)
    assert "SMTPRecipientsRefused" in line["exception"]
    assert "***@example.org" in line["exception"]
    assert line["note"] == "to ***@example.org"
    assert "alice" not in log_file.read_text(encoding="utf-8")


def test_stdlib_lines_with_ordinary_arguments_are_left_alone(log_file: Path) -> None:
    logging.getLogger("dramatiq.worker.Worker").warning("Requeueing %r on queue %r.", 3, "jobs")

    (line,) = _lines(log_file)
    assert line["event"] == "Requeueing 3 on queue 'jobs'."
