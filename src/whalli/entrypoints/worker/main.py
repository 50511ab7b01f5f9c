"""Run a Dramatiq worker in this process until SIGTERM or SIGINT.

Start-up order matters because the actors are ``async def``: the AsyncIO middleware starts its
event loop when the worker boots, and the container's async resources (pools, clients) must be
created on that loop. So the actor is declared first with a dispatch that waits for the
dispatcher, the worker starts, the resources are initialised on its loop, and then the dispatcher
is handed over. (Declaring the actor after the worker started would race: Dramatiq starts the
queue's consumer before it records the actor, and a message fetched in between is dead-lettered
as addressed to an unknown actor.) If start-up fails, messages already taken fail (and are
retried later) and the worker exits with 1.

On shutdown the worker finishes the messages in hand, then the resources are closed on the loop,
then the loop stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Middleware

from whalli.adapters.dramatiq.abandoned import AbandonedJobs
from whalli.adapters.dramatiq.broker import DEFAULT_TIME_LIMIT_MS, create_broker
from whalli.adapters.dramatiq.metrics import WorkerMetrics
from whalli.config import ConfigError, Settings
from whalli.domain.model.jobs import Job, JobAbandoned
from whalli.entrypoints.worker.actors import register
from whalli.entrypoints.worker.dispatch import JobDispatcher
from whalli.entrypoints.worker.metrics_server import MetricsServer

log = logging.getLogger(__name__)


class WorkerContainer(Protocol):
    """What the worker needs from the composition root.

    ``init_resources``/``shutdown_resources`` may return an awaitable (dependency-injector does
    when some resources are async); ``job_dispatcher`` may too.
    """

    def init_resources(self) -> object: ...

    def shutdown_resources(self) -> object: ...

    def job_dispatcher(self) -> object: ...


async def _maybe_await(value: object) -> object:
    if inspect.isawaitable(value):
        return await value
    return value


async def _start(container: WorkerContainer) -> JobDispatcher:
    await _maybe_await(container.init_resources())
    dispatcher = await _maybe_await(container.job_dispatcher())
    if not isinstance(dispatcher, JobDispatcher):
        raise TypeError(f"job_dispatcher() returned {type(dispatcher).__name__}")
    return dispatcher


async def _stop(container: WorkerContainer) -> None:
    await _maybe_await(container.shutdown_resources())


class _CloseResources(Middleware):
    """Close the container's resources after the worker stopped, before the loop stops.

    Added after the AsyncIO middleware, so its ``after_worker_shutdown`` runs first.
    """

    def __init__(self, container: WorkerContainer) -> None:
        self.container = container
        self.armed = False
        self.failed = False

    def after_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        if not self.armed:
            return
        loop_thread = get_event_loop_thread()
        try:
            if loop_thread is None:
                raise RuntimeError("the event loop is gone")
            loop_thread.run_coroutine(_stop(self.container))
        except Exception:
            self.failed = True
            log.exception("Closing the worker's resources failed.")


def _event_loop() -> EventLoopThread:
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("The AsyncIO middleware did not start an event loop.")
    return loop_thread


def broker_for(settings: Settings) -> RedisBroker:
    """The broker the settings describe, namespaced like the container's (which enqueues)."""
    if settings.redis_url is None:
        raise ConfigError("WHALLI_REDIS_URL is required to run a worker")
    return create_broker(
        settings.redis_url.reveal(),
        namespace=settings.queue_name,
        max_retries=settings.job_max_retries,
        min_backoff_ms=settings.job_min_backoff_ms,
        max_backoff_ms=settings.job_max_backoff_ms,
        time_limit_ms=job_time_limit_ms(settings),
        max_deliveries=settings.job_max_deliveries,
        heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms,
        maintenance_chance=settings.worker_maintenance_chance,
    )


def job_time_limit_ms(settings: Settings) -> int:
    """How long one job may run: ten minutes, or longer when a job the limits allow may take
    longer (:attr:`Settings.longest_job_s`): a transcription (``WHALLI_TRANSCRIPTION_TIMEOUT_S``,
    up to an hour) or an extraction (``WHALLI_EXTRACTION_WALL_TIME_S``), each plus its download.
    The one actor runs every kind of job, so its limit covers the longest. A job cut by the
    limit is retried (a transcription's provider paid again) and a long one never completes;
    an extraction cut before its own wall time would fail with a generic error instead of it."""
    return max(DEFAULT_TIME_LIMIT_MS, math.ceil(settings.longest_job_s * 1000))


def run_worker(
    settings: Settings,
    container_factory: Callable[[], WorkerContainer],
    *,
    broker_factory: Callable[[Settings], RedisBroker] = broker_for,
    stop_timeout_s: float = 30.0,
) -> int:
    """Consume ``settings.queue_name`` until SIGTERM/SIGINT; return the process exit code."""
    broker = broker_factory(settings)
    broker.add_middleware(WorkerMetrics())
    container = container_factory()
    closer = _CloseResources(container)
    broker.add_middleware(closer)
    dramatiq.set_broker(broker)

    ready: concurrent.futures.Future[JobDispatcher] = concurrent.futures.Future()

    async def dispatch(job: Job) -> None:
        dispatcher = await asyncio.wrap_future(ready)
        await dispatcher.dispatch(job)

    async def abandoned(event: JobAbandoned) -> None:
        dispatcher = await asyncio.wrap_future(ready)
        await dispatcher.abandoned(event)

    # first (before create_broker's first, AgeLimit): its after-hooks then run last
    broker.add_middleware(AbandonedJobs(abandoned), before=AgeLimit)
    register(
        broker, dispatch, queue_name=settings.queue_name,
        min_retry_delay_ms=settings.job_min_backoff_ms,
    )  # fmt: skip
    try:
        metrics = _metrics_server(settings)
    except OSError as e:  # the worker does not start unwatched
        log.error(
            "The worker's metrics could not be served on %s:%d: %s",
            settings.worker_metrics_host, settings.worker_metrics_port, e.strerror or e,
        )  # fmt: skip
        broker.close()
        return 1
    stop = threading.Event()
    restore = _handle_signals(stop)
    worker = dramatiq.Worker(
        broker, queues={settings.queue_name}, worker_threads=settings.worker_threads
    )
    try:
        # What Dramatiq's own CLI emits in each worker process; TimeLimit starts its watchdog here.
        broker.emit_after("process_boot")
        worker.start()
        closer.armed = True  # init may have opened some resources even if it fails
        try:
            ready.set_result(_event_loop().run_coroutine(_start(container)))
        except Exception:
            log.exception("The worker could not start.")
            ready.set_exception(RuntimeError("the worker could not start"))
            worker.stop(timeout=int(stop_timeout_s * 1000))
            return 1
        log.info(
            "Worker consuming queue %r with %d threads.",
            settings.queue_name,
            settings.worker_threads,
        )
        while not stop.wait(1.0):
            pass
        log.info("Stopping the worker.")
        worker.stop(timeout=int(stop_timeout_s * 1000))
        return 1 if closer.failed else 0
    finally:
        restore()
        if metrics is not None:
            metrics.stop()
        broker.close()


def _metrics_server(settings: Settings) -> MetricsServer | None:
    """The started metrics server (``None``: not asked for). ``OSError``: its port could not
    be bound."""
    if not settings.worker_metrics_port:
        return None
    token = settings.metrics_token.reveal() if settings.metrics_token else None
    server = MetricsServer(settings.worker_metrics_host, settings.worker_metrics_port, token)
    server.start()
    log.info("Worker metrics at http://%s:%d/metrics", settings.worker_metrics_host, server.port)
    return server


def _handle_signals(stop: threading.Event) -> Callable[[], None]:
    """Turn SIGTERM/SIGINT into ``stop``; return a function that restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
