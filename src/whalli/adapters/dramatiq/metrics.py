"""Prometheus metrics of the worker, as a Dramatiq middleware.

Works in prometheus_client's multiprocess mode: the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` before
``prometheus_client`` is first imported, counters and histograms then write to files in that
directory and the in-progress gauge is a ``livesum`` over live processes (a worker removes its
gauge file when it shuts down).

The collectors are created once per registry (not per middleware instance), so several brokers in
one process share them instead of failing on duplicate registration.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any, NamedTuple

from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import q_name
from dramatiq.message import Message
from dramatiq.middleware import Middleware
from dramatiq.worker import Worker
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("queue_name", "actor_name")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)


class WorkerCollectors(NamedTuple):
    processed: Counter
    failed: Counter
    retried: Counter
    dead_lettered: Counter
    duration: Histogram
    in_progress: Gauge


@functools.cache
def worker_collectors(registry: CollectorRegistry = REGISTRY) -> WorkerCollectors:
    return WorkerCollectors(
        processed=Counter(
            "whalli_worker_messages_processed_total",
            "Messages a worker finished handling (successfully or not, or skipped).",
            LABELS,
            registry=registry,
        ),
        failed=Counter(
            "whalli_worker_messages_failed_total",
            "Messages whose handling raised.",
            LABELS,
            registry=registry,
        ),
        retried=Counter(
            "whalli_worker_messages_retried_total",
            "Messages queued again for a retry after a failure.",
            LABELS,
            registry=registry,
        ),
        dead_lettered=Counter(
            "whalli_worker_messages_dead_lettered_total",
            "Messages moved to the dead-letter queue.",
            LABELS,
            registry=registry,
        ),
        duration=Histogram(
            "whalli_worker_message_duration_seconds",
            "Time spent handling one message.",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        in_progress=Gauge(
            "whalli_worker_messages_in_progress",
            "Messages being handled right now.",
            LABELS,
            multiprocess_mode="livesum",
            registry=registry,
        ),
    )


class WorkerMetrics(Middleware):
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._c = worker_collectors(registry)
        # message id -> start time; worker threads touch distinct keys, the lock keeps it simple
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            self._started[message.message_id] = time.perf_counter()
        self._c.in_progress.labels(message.queue_name, message.actor_name).inc()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        labels = (message.queue_name, message.actor_name)
        with self._lock:
            started = self._started.pop(message.message_id, None)
        # A middleware that runs before this one may skip a message before it was counted in.
        if started is not None:
            self._c.in_progress.labels(*labels).dec()
            self._c.duration.labels(*labels).observe(time.perf_counter() - started)
        self._c.processed.labels(*labels).inc()
        if exception is not None:
            self._c.failed.labels(*labels).inc()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        # The Retries middleware re-enqueues with a delay; moving a due message from the delay
        # queue back to its queue enqueues it again without one, which must not count twice.
        if "retries" in message.options and delay is not None:
            self._c.retried.labels(q_name(message.queue_name), message.actor_name).inc()

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        self._c.dead_lettered.labels(message.queue_name, message.actor_name).inc()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
