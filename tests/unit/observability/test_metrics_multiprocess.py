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
import os
from whalli.adapters.prometheus.metrics import http_metrics
m = http_metrics()
m.requests_total.labels("GET", "/api/chats/{chat_id:uuid}", "200").inc(3)
m.requests_in_flight.inc()
print(os.getpid())
"""


def _run_child() -> int:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    return int(done.stdout)


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

    mark_process_dead(first)
    mark_process_dead(second)
    text = render_metrics()[0].decode()
    assert f"{counter} 6.0" in text
    assert "whalli_http_requests_in_flight 2.0" not in text
