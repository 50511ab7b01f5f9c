"""Prometheus metrics, aggregated across processes when ``PROMETHEUS_MULTIPROC_DIR`` is set.

prometheus_client decides at import time whether values live in memory or in per-process files
under ``PROMETHEUS_MULTIPROC_DIR``. So this module imports it lazily: the CLI can import it and
call :func:`prepare_multiprocess_dir` before any API or worker process touches a metric.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Fine enough below a second for p50/p95/p99 of ordinary requests, with a tail for slow ones.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
# An event stream lasts as long as a reply (seconds to minutes) or a file's feed (up to 10 min).
STREAM_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True, slots=True)
class HttpMetrics:
    requests_total: Counter
    request_duration_seconds: Histogram
    stream_duration_seconds: Histogram
    requests_in_flight: Gauge


@functools.cache
def http_metrics() -> HttpMetrics:
    """The HTTP metrics, registered once per process on the default registry."""
    from prometheus_client import Counter, Gauge, Histogram

    return HttpMetrics(
        requests_total=Counter(
            "whalli_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
        ),
        request_duration_seconds=Histogram(
            "whalli_http_request_duration_seconds",
            "HTTP request duration, for requests not answered with an event stream.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
        ),
        stream_duration_seconds=Histogram(
            "whalli_http_stream_duration_seconds",
            "Duration of HTTP requests answered with an event stream (SSE), until it ends: "
            "as long as the reply or feed it carries, so kept apart from request latency.",
            ["method", "route"],
            buckets=STREAM_BUCKETS,
        ),
        requests_in_flight=Gauge(
            "whalli_http_requests_in_flight",
            "HTTP requests being handled (open streams included).",
            multiprocess_mode="livesum",
        ),
    )


@functools.cache
def rate_limiter_errors() -> Counter:
    """Rate-limit checks that failed because the store was unreachable (requests then pass, or
    get 503 when failing closed)."""
    from prometheus_client import Counter

    return Counter(
        "whalli_rate_limiter_errors_total",
        "Rate-limit checks that failed because the store was unreachable.",
    )


@functools.cache
def chat_start_waits() -> Counter:
    """Chat starts that waited for an admission slot (entrypoints/http/admission.py), by how
    the wait ended: ``turn`` (a slot was handed over) or ``timed_out`` (it went in anyway after
    ``WHALLI_CHAT_START_MAX_WAIT_S``). Many ``timed_out``: the slots are too few for the
    traffic, or starts hold them long (a slow database)."""
    from prometheus_client import Counter

    return Counter(
        "whalli_chat_start_waits_total",
        "Chat starts that waited for an admission slot, by how the wait ended.",
        ["outcome"],
    )


def count_chat_start_wait(turn: bool) -> None:
    chat_start_waits().labels("turn" if turn else "timed_out").inc()


def scrape_allowed(authorization: str, token: str | None) -> bool:
    """Whether a scrape's ``Authorization`` header carries the metrics token (anyone may
    scrape when no token is set), compared in constant time."""
    if not token:
        return True
    scheme, _, value = authorization.strip().partition(" ")
    # the scheme is case-insensitive (RFC 9110 11.1); the token is compared in constant time
    given = value.strip().encode("latin-1", "replace") if scheme.lower() == "bearer" else b""
    return hmac.compare_digest(given, token.encode())


def render_metrics() -> tuple[bytes, str]:
    """Return ``(body, content_type)`` in the Prometheus text format.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, every process writing to that directory (API and
    worker processes alike) is aggregated, the live gauges of processes that ended without
    saying so first dropped (``drop_dead_processes``); otherwise this process's default
    registry is used.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client.multiprocess import MultiProcessCollector

        drop_dead_processes()
        from whalli.adapters.prometheus.chat_metrics import sse_connections

        sse_connections()  # made in this process too: with every streaming one gone, it reads 0
        registry = CollectorRegistry()
        registry.register(_ReadableFiles(MultiProcessCollector))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# A process's metrics file begins with 8 bytes (how much of it is used); prometheus_client
# creates the file empty, then sizes it.
_FILE_HEADER_BYTES = 8


class _ReadableFiles:
    """The multiprocess collector over the directory's files that hold their header. An empty
    one is a file a process is creating this instant (a scrape then failed with a 500), or one
    left so by a process killed while creating it (every scrape then failed, for as long as
    the directory lived). It holds no value either way."""

    def __init__(self, collector: type[MultiProcessCollector]) -> None:
        self._merge = collector.merge
        self._path = os.environ[MULTIPROC_ENV]

    def collect(self) -> Iterable[Metric]:
        files = []
        for entry in os.scandir(self._path):
            if entry.name.endswith(".db") and _holds_header(entry):
                files.append(entry.path)
        return self._merge(files, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]


def _holds_header(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.stat().st_size >= _FILE_HEADER_BYTES
    except FileNotFoundError:  # dropped meanwhile (a dead process's live gauges)
        return False


def prepare_multiprocess_dir(path: str) -> None:
    """Create ``path`` (emptied of a previous run's files) and export it to child processes.

    Call it in the parent before starting API or worker processes, and before anything in those
    processes imports prometheus_client.
    """
    directory = Path(path)
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())


_LIVE_GAUGE = re.compile(r"gauge_live\w*_(\d+)\.db")


def drop_dead_processes() -> list[int]:
    """Drop the live gauges (open streams, requests in flight) of every process of the
    directory that is gone: one killed (SIGKILL, out of memory) never says so, and a worker
    process uvicorn replaced, or a ``whalli serve`` restarted on the same directory, would
    count its streams for ever. The directory is taken to be this host's own (one PID
    namespace: a container's, or the machine's). Counters are kept. The pids dropped."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not Path(path).is_dir():
        return []
    pids = {int(m[1]) for e in os.listdir(path) if (m := _LIVE_GAUGE.fullmatch(e))}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        mark_process_dead(pid)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (e.g. in-flight requests); counters are kept."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
