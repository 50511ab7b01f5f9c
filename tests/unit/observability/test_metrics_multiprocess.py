from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from whalli.adapters.prometheus.metrics import (
    MULTIPROC_ENV,
    mark_process_dead,
    prepare_multiprocess_dir,
    render_metrics,
)

CHILD = """
import os, sys
from whalli.adapters.prometheus.metrics import http_metrics
m = http_metrics()
m.requests_total.labels("GET", "/api/chats/{chat_id:uuid}", "200").inc(3)
m.requests_in_flight.inc()
print(os.getpid(), flush=True)
sys.stdin.read()  # alive until told to end
"""


def _run_child() -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    child.stdout.readline()  # its metrics are written
    return child


def _end(child: subprocess.Popen[str]) -> int:
    child.communicate(timeout=30)  # its stdin closed: it ends (and its pipes are closed)
    return child.pid


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Recorded so that the variable prepare_multiprocess_dir exports is undone after the test.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1234.db").write_bytes(b"stale")
    prepare_multiprocess_dir(str(directory))
    return directory


def test_preparing_the_directory_empties_it_and_exports_it(multiproc_dir: Path) -> None:
    import os

    assert list(multiproc_dir.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(multiproc_dir.resolve())


def test_metrics_of_several_processes_are_summed_and_dead_ones_leave_the_live_gauge(
    multiproc_dir: Path,
) -> None:
    first, second = _run_child(), _run_child()

    body, content_type = render_metrics()
    text = body.decode()
    counter = (
        'whalli_http_requests_total{method="GET",route="/api/chats/{chat_id:uuid}",status="200"}'
    )
    assert f"{counter} 6.0" in text
    assert "whalli_http_requests_in_flight 2.0" in text
    assert content_type.startswith("text/plain")

    _end(first)
    mark_process_dead(_end(second))  # one says so; the other ended without a word (a kill)
    text = render_metrics()[0].decode()
    assert f"{counter} 6.0" in text
    assert "whalli_http_requests_in_flight 2.0" not in text
    assert "whalli_http_requests_in_flight 1.0" not in text  # neither is counted any more


def test_an_empty_file_left_by_a_process_killed_while_creating_it_fails_no_scrape(
    multiproc_dir: Path,
) -> None:
    """prometheus_client creates a process's file empty, then sizes it: a process killed in
    between (or one creating it while a scrape reads) leaves a file without its header. It
    holds no value; the others are read and summed."""
    (multiproc_dir / "counter_999999.db").write_bytes(b"")
    (multiproc_dir / "histogram_999999.db").write_bytes(b"\x00\x00")
    child = _run_child()
    try:
        text = render_metrics()[0].decode()
    finally:
        _end(child)
    counter = (
        'whalli_http_requests_total{method="GET",route="/api/chats/{chat_id:uuid}",status="200"}'
    )
    assert f"{counter} 3.0" in text
    assert "whalli_http_requests_in_flight 1.0" in text
