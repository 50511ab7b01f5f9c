"""The production worker (``whalli worker``) extracting real files from S3 into Postgres.

Objects go into a bucket of their own and rows into the shared test database through the real
adapters; jobs go in through ``DramatiqJobQueue``. Each test has its own queue. Waits are bounded
(a broken worker fails the test, with its log); nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from redis.asyncio import Redis

from tests.integration.entities import World, an_attachment, committed_world
from tests.support.documents import image_bytes, png_declaring, text_image, text_pdf
from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import DramatiqJobQueue
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.s3.blob_storage import S3BlobStorage
from whalli.adapters.s3.client import create_minio
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.jobs import ExtractAttachment, decode_job

WAIT_LIMIT_S = 120.0
# dead workers are noticed after two seconds without a heartbeat; maintenance on every command
FAST_RECOVERY = {
    "WHALLI_WORKER_HEARTBEAT_TIMEOUT_MS": "2000",
    "WHALLI_WORKER_MAINTENANCE_CHANCE": "1000000",
}


class Worker:
    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "whalli.entrypoints.cli.main", "worker"],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT_LIMIT_S)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit; its log:\n{self.log()}")

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        self._log.close()


class Files:
    """Uploads done by hand: the object in S3, the pending row in Postgres."""

    def __init__(self, pool: PostgresPool, blobs: S3BlobStorage, world: World) -> None:
        self.pool, self.blobs, self.world = pool, blobs, world

    async def upload(self, data: bytes, filename: str, content_type: str) -> Attachment:
        attachment = an_attachment(self.world.project, self.world.user)
        attachment.filename, attachment.content_type = filename, content_type
        attachment.size_bytes = len(data)
        await self.blobs.put(attachment.object_key, _chunks(data), content_type)
        async with PostgresUnitOfWork(self.pool) as uow:
            await uow.attachments.add(attachment)
            await uow.commit()
        return attachment

    async def read(self, attachment_id: UUID) -> Attachment:
        async with PostgresUnitOfWork(self.pool) as uow:
            return await uow.attachments.get(attachment_id)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def queue_name(unique: str) -> str:
    return f"extraction-test-{unique}"


@pytest.fixture
def start_worker(
    stack_urls: StackUrls, queue_name: str, unique: str, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    # OMP_THREAD_LIMIT too: the worker must set it itself
    dropped = ("WHALLI_", "OMP_THREAD_LIMIT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        WHALLI_DATABASE_URL=stack_urls.database_url,
        WHALLI_REDIS_URL=stack_urls.redis_url,
        WHALLI_S3_ENDPOINT=stack_urls.s3_endpoint,
        WHALLI_S3_ACCESS_KEY=stack_urls.s3_access_key,
        WHALLI_S3_SECRET_KEY=stack_urls.s3_secret_key,
        WHALLI_S3_BUCKET=f"extraction-{unique}",
        WHALLI_QUEUE_NAME=queue_name,
        WHALLI_WORKER_THREADS="2",
        WHALLI_JOB_MIN_BACKOFF_MS="10",
        WHALLI_JOB_MAX_BACKOFF_MS="50",
        # the sweepers would pick up other tests' rows in the shared database
        WHALLI_EXTRACTION_SWEEP_INTERVAL_S="0",
        WHALLI_REPLY_SWEEP_INTERVAL_S="0",
        WHALLI_LOG_DIR=str(tmp_path / "logs"),
        WHALLI_LOG_JSON="false",
        WHALLI_DATA_DIR=str(tmp_path / "data"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    (tmp_path / "metrics").mkdir()
    started: list[Worker] = []

    def start(**extra: str) -> Worker:
        worker = Worker({**env, **extra}, tmp_path, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
async def files(pg_pool: PostgresPool, stack_urls: StackUrls, unique: str) -> AsyncIterator[Files]:
    client = create_minio(
        stack_urls.s3_endpoint, stack_urls.s3_access_key, stack_urls.s3_secret_key
    )
    bucket = f"extraction-{unique}"
    blobs = S3BlobStorage(client, bucket)
    await blobs.ensure_bucket()
    yield Files(pg_pool, blobs, await committed_world(PostgresUnitOfWork(pg_pool)))
    for obj in client.list_objects(bucket, recursive=True):
        client.remove_object(bucket, obj.object_name)
    client.remove_bucket(bucket)


@pytest.fixture
def broker(stack_urls: StackUrls, queue_name: str) -> Iterator[RedisBroker]:
    broker = create_broker(stack_urls.redis_url, namespace=queue_name)
    yield broker
    for key in broker.client.scan_iter(match=f"{queue_name}:*"):
        broker.client.delete(key)
    broker.client.close()


@pytest.fixture
async def redis(stack_urls: StackUrls) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack_urls.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def job_queue(broker: RedisBroker, queue_name: str, redis: Redis) -> DramatiqJobQueue:
    return DramatiqJobQueue(broker, queue_name, client=redis)


async def eventually(check: Callable[[], Awaitable[Any]], worker: Worker) -> Any:
    """Poll ``check`` until it returns something truthy; fail (with the log) past the limit."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        if result := await check():
            return result
        if not worker.alive():
            pytest.fail(f"the worker exited early; its log:\n{worker.log()}")
        await asyncio.sleep(0.05)
    pytest.fail(f"gave up waiting; the worker's log:\n{worker.log()}")


async def extracted(
    files: Files, job_queue: DramatiqJobQueue, worker: Worker, attachment: Attachment
) -> Attachment:
    """Queue the extraction of ``attachment`` and wait until it is done or failed."""
    await job_queue.enqueue(ExtractAttachment(attachment_id=attachment.id))

    async def final() -> Attachment | None:
        stored = await files.read(attachment.id)
        return stored if stored.is_final else None

    result: Attachment = await eventually(final, worker)
    return result


def dead_letters(redis_url: str, queue_name: str) -> Callable[[], Awaitable[list[Message[Any]]]]:
    async def read() -> list[Message[Any]]:
        async with Redis.from_url(redis_url) as client:
            raw = await client.hvals(f"{queue_name}:{queue_name}.XQ.msgs")
        return [Message.decode(data) for data in raw]

    return read


def words(attachment: Attachment) -> set[str]:
    assert attachment.extraction is not None, attachment.failure_reason
    return set(attachment.extraction.text.lower().replace(".", " ").split())


def long_scan(pages: int) -> bytes:
    """An image-only PDF of ``pages`` pages: OCR keeps a worker busy for a while."""
    images = [text_image(f"Page {n} of the ledger", "Reconciled accounts") for n in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", resolution=150, save_all=True, append_images=images[1:])
    return buffer.getvalue()


async def processing(files: Files, attachment: Attachment) -> bool:
    return (await files.read(attachment.id)).status is AttachmentStatus.PROCESSING


def forkserver(worker: Worker) -> Path:
    """The /proc entry of the extraction sandbox's fork server, a child of the worker."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == worker.process.pid and b"multiprocessing.forkserver" in cmdline:
            return entry
    pytest.fail(f"the worker has no fork server; its log:\n{worker.log()}")


async def test_a_text_pdf_and_a_png_end_done_with_their_words_read_in_a_preloaded_sandbox(
    start_worker: Callable[..., Worker], files: Files, job_queue: DramatiqJobQueue
) -> None:
    worker = start_worker()
    pdf = await files.upload(
        text_pdf("Quarterly revenue grew", "Margins held steady"), "q3.pdf", "application/pdf"
    )
    png = await files.upload(
        image_bytes(text_image("Invoice number 4711", "Total due today"), "PNG"),
        "scan.png",
        "image/png",
    )

    done_pdf = await extracted(files, job_queue, worker, pdf)
    done_png = await extracted(files, job_queue, worker, png)

    assert done_pdf.status is AttachmentStatus.DONE
    assert {"quarterly", "revenue", "grew", "margins", "steady"} <= words(done_pdf)
    assert done_pdf.extraction is not None
    assert (done_pdf.extraction.page_count, done_pdf.extraction.method) == (2, "text")
    assert done_png.status is AttachmentStatus.DONE
    assert {"invoice", "4711", "total"} <= words(done_png)
    assert done_png.extraction is not None
    assert done_png.extraction.method == "ocr"
    # the fork server the sandboxes come from has the parsers loaded already (Pillow's C core),
    # and started with Tesseract limited to one thread
    server = forkserver(worker)
    assert "_imaging" in (server / "maps").read_text()
    assert b"OMP_THREAD_LIMIT=1" in (server / "environ").read_bytes().split(b"\0")
    assert worker.terminate() == 0


async def test_hostile_files_fail_with_a_reason_while_the_worker_lives_on(
    start_worker: Callable[..., Worker], files: Files, job_queue: DramatiqJobQueue
) -> None:
    worker = start_worker()
    bomb = await files.upload(png_declaring(20000, 20000), "bomb.png", "image/png")
    whole = text_pdf("Nothing to see here", "Second page")
    truncated = await files.upload(whole[: len(whole) // 2], "cut.pdf", "application/pdf")

    failed_bomb = await extracted(files, job_queue, worker, bomb)
    failed_pdf = await extracted(files, job_queue, worker, truncated)
    later = await files.upload(text_pdf("Still working fine"), "later.pdf", "application/pdf")
    done = await extracted(files, job_queue, worker, later)

    assert failed_bomb.status is AttachmentStatus.FAILED
    assert failed_bomb.failure_reason is not None
    assert failed_bomb.failure_reason.startswith("the image is too large to be read")
    assert failed_pdf.status is AttachmentStatus.FAILED
    assert failed_pdf.failure_reason == "the PDF is damaged or incomplete"
    assert done.status is AttachmentStatus.DONE
    assert {"still", "working", "fine"} <= words(done)
    assert worker.alive()
    assert worker.terminate() == 0


async def test_a_job_whose_worker_is_killed_is_delivered_again_and_completes(
    start_worker: Callable[..., Worker], files: Files, job_queue: DramatiqJobQueue
) -> None:
    first = start_worker(**FAST_RECOVERY)
    ledger = await files.upload(long_scan(12), "ledger.pdf", "application/pdf")
    await job_queue.enqueue(ExtractAttachment(attachment_id=ledger.id))
    await eventually(lambda: processing(files, ledger), first)

    first.kill()
    assert (await files.read(ledger.id)).status is AttachmentStatus.PROCESSING  # mid-job
    second = start_worker(**FAST_RECOVERY)

    async def final() -> Attachment | None:
        stored = await files.read(ledger.id)
        return stored if stored.is_final else None

    done: Attachment = await eventually(final, second)
    assert done.status is AttachmentStatus.DONE, done.failure_reason
    assert {"ledger", "reconciled", "accounts"} <= words(done)
    assert done.extraction is not None
    assert done.extraction.page_count == 12
    assert second.terminate() == 0


async def test_a_job_that_keeps_killing_its_workers_is_dead_lettered_and_others_still_run(
    start_worker: Callable[..., Worker],
    files: Files,
    job_queue: DramatiqJobQueue,
    stack_urls: StackUrls,
    queue_name: str,
) -> None:
    deadly = {**FAST_RECOVERY, "WHALLI_JOB_MAX_DELIVERIES": "1"}
    first = start_worker(**deadly)
    poison = await files.upload(long_scan(12), "poison.pdf", "application/pdf")
    job = ExtractAttachment(attachment_id=poison.id)
    await job_queue.enqueue(job)
    await eventually(lambda: processing(files, poison), first)
    first.kill()

    second = start_worker(**deadly)

    [dead] = await eventually(dead_letters(stack_urls.redis_url, queue_name), second)
    assert decode_job(dead.args[0]) == job
    assert "retries" not in dead.options  # it never failed: its workers died
    assert (await files.read(poison.id)).status is AttachmentStatus.PROCESSING
    later = await files.upload(text_pdf("Next in line"), "next.pdf", "application/pdf")
    assert (await extracted(files, job_queue, second, later)).status is AttachmentStatus.DONE
    assert second.terminate() == 0
    assert "had 1 deliveries that never finished" in second.log()


async def test_an_unreachable_store_is_retried_then_dead_lettered_leaving_the_file_processing(
    start_worker: Callable[..., Worker],
    files: Files,
    job_queue: DramatiqJobQueue,
    stack_urls: StackUrls,
    queue_name: str,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    worker = start_worker(WHALLI_S3_ENDPOINT=closed, WHALLI_JOB_MAX_RETRIES="2")
    report = await files.upload(text_pdf("Stored but unreachable"), "r.pdf", "application/pdf")
    job = ExtractAttachment(attachment_id=report.id)

    await job_queue.enqueue(job)

    [dead] = await eventually(dead_letters(stack_urls.redis_url, queue_name), worker)
    assert decode_job(dead.args[0]) == job
    assert dead.options["retries"] == 2  # transient: retried with backoff
    assert "ServiceUnavailable" in dead.options["traceback"]
    # left for the sweeper (or a later retry) to pick up, never failed for a passing outage
    assert (await files.read(report.id)).status is AttachmentStatus.PROCESSING
    assert worker.terminate() == 0
