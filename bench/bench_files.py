"""File uploads and extraction through Whalli against the same work done directly, in one run.

Processes: an embedded Postgres/Redis/S3 (temp dir, fast), the API under ``whalli serve``
(uvicorn, one process) and ``whalli worker`` processes, all with the same ``WHALLI_*``
environment, and this client (httpx). Figures:

1. upload throughput, ``POST /api/files/upload`` with a streamed multipart body of 200 MiB
   (random bytes behind a PNG signature) ÷ ``S3BlobStorage.put`` of the same bytes with the same
   MinIO client, straight to the store (interleaved rounds, median of the per-round ratios);
2. the API's peak RSS growth during a 1 GiB upload (VmHWM reset just before, VmRSS sampled);
3. upload → ``done`` (polling ``GET /api/files/{id}`` every 20 ms; one worker, one thread) ÷
   in-process pdfplumber on the same dense text PDFs, raw and minus the queue latency (201 →
   status seen no longer ``pending``);
4. OCR pages per second (image-only PDFs, 16 jobs of 2 pages) with two worker processes ÷ one
   (one thread each, so that a worker process runs one job at a time; both warmed up first;
   the one-worker rounds pause the second with SIGSTOP; interleaved rounds, median ratio),
   next to the same ratio for the worker's own sandboxed extractor run in this process, one
   file or two at a time: the scaling this machine allows at that moment.

The extraction phases run first (after gigabytes of writes and deletes the store and Postgres
do background work that slowed them). The upload phase uses its own API whose queue no worker
reads, so the random "PNG" payloads are never extracted.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._files_docs import CHUNK, Payload, scanned_pdf, text_pdf
from bench._files_world import (
    base_env,
    cpu_s,
    delete,
    has_forkserver,
    paused,
    proc_kib,
    register,
    reset_peak_rss,
    start_api,
    start_worker,
    stop,
    until_final,
    upload,
)
from whalli.adapters.embedded.stack import EmbeddedStack, StackUrls
from whalli.adapters.extraction.pdf_ocr import PdfOcrTextExtractor
from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir
from whalli.adapters.s3.blob_storage import S3BlobStorage
from whalli.adapters.s3.client import create_minio

UPLOAD_BYTES = 200 * CHUNK
BIG_BYTES = 1024 * CHUNK
MAX_UPLOAD_ENV = "WHALLI_MAX_UPLOAD_BYTES"
THROUGHPUT_ROUNDS = 3
PDF_PAGES = (8, 12, 16)
EXTRACT_ROUNDS = 2
OCR_JOBS, OCR_PAGES, OCR_ROUNDS = 16, 2, 2
MARKER = "ZEPHYRMARK"
POLL = 0.02  # s between status polls: each costs the API a few ms of CPU, which the worker shares
PDF = "application/pdf"


class Run:
    def __init__(self, root: Path, urls: StackUrls, procs: list[Any]) -> None:
        self.root, self.urls, self.procs = root, urls, procs
        self.env = base_env(urls.as_env(), root) | {"WHALLI_QUEUE_NAME": "bench"}
        self.figures: dict[str, float | str] = {}
        self.auth: dict[str, str] = {}

    def api(self, name: str, **extra: str) -> tuple[Any, httpx.AsyncClient]:
        proc, url = start_api({**self.env, **extra}, self.root / f"{name}.log")
        self.procs.append(proc)
        return proc, httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0))

    def worker(self, name: str) -> Any:
        proc = start_worker({**self.env, "WHALLI_WORKER_THREADS": "1"}, self.root / f"{name}.log")
        self.procs.append(proc)
        return proc

    async def uploads(self) -> None:
        extra = {"WHALLI_QUEUE_NAME": "bench-sink", MAX_UPLOAD_ENV: str(2 * BIG_BYTES)}
        proc, client = self.api("api-upload", **extra)
        async with client:
            self.auth = await register(client)
            minio = create_minio(
                self.urls.s3_endpoint, self.urls.s3_access_key, self.urls.s3_secret_key
            )
            storage = S3BlobStorage(minio, "bench")
            await storage.ensure_bucket()
            small = Payload(CHUNK)
            await delete(client, self.auth, await self._whalli(client, small))
            await storage.put("bench/warm", small.achunks(), "image/png")
            await self._rss(client, proc.pid)
            payload, ratios, w_rates, d_rates = Payload(UPLOAD_BYTES), [], [], []
            for n in range(THROUGHPUT_ROUNDS):
                started = time.perf_counter()
                await storage.put(f"bench/direct-{n}", payload.achunks(), "image/png")
                d_rates.append(UPLOAD_BYTES / (time.perf_counter() - started))
                await storage.delete(f"bench/direct-{n}")
                started = time.perf_counter()
                file_id = await self._whalli(client, payload)
                w_rates.append(UPLOAD_BYTES / (time.perf_counter() - started))
                await delete(client, self.auth, file_id)
                ratios.append(w_rates[-1] / d_rates[-1])
        stop(proc)
        self.figures |= {
            "direct_s3_put_mib_per_s": round(statistics.median(d_rates) / CHUNK, 1),
            "whalli_upload_mib_per_s": round(statistics.median(w_rates) / CHUNK, 1),
            "ratio_upload_vs_direct_put": round(statistics.median(ratios), 2),
        }

    async def _whalli(self, client: httpx.AsyncClient, payload: Payload) -> str:
        return await upload(
            client, self.auth, payload.achunks(), payload.size, "bench.png", "image/png"
        )

    async def _rss(self, client: httpx.AsyncClient, pid: int) -> None:
        reset = reset_peak_rss(pid)
        before = proc_kib(pid, "VmRSS")
        peak = before
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc_kib(pid, "VmRSS"))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        try:
            file_id = await self._whalli(client, Payload(BIG_BYTES))
        finally:
            done.set()
            await sampler
        seconds = time.perf_counter() - started
        if reset:
            peak = max(peak, proc_kib(pid, "VmHWM"))
        await delete(client, self.auth, file_id)
        self.figures |= {
            "api_rss_before_1gib_upload_mib": round(before / 1024, 1),
            "api_peak_rss_growth_1gib_upload_mib": round((peak - before) / 1024, 1),
            "peak_measured_by": "VmHWM reset + VmRSS samples" if reset else "VmRSS samples",
            "whalli_upload_1gib_mib_per_s": round(BIG_BYTES / seconds / CHUNK, 1),
        }

    async def extraction(self) -> None:
        api, client = self.api("api-extract")
        async with client:
            self.auth = await register(client)
            first = self.worker("worker-1")
            await self._warm(client, first)
            await self._pdfs(client)
            second = self.worker("worker-2")
            with paused(first):  # else the first worker, polling more often, takes the jobs
                await self._warm(client, second)
            extractor, paths = self._scans()
            await extractor.extract(paths[0], PDF)  # starts its fork server
            one, two, direct_one, direct_two = [], [], [], []
            pids = (api.pid, first.pid, second.pid)
            cpu = cpu_s(*pids)
            for _ in range(OCR_ROUNDS):  # interleaved; a paused worker holds no message
                with paused(second):
                    one.append(await self._ocr(client))
                two.append(await self._ocr(client))
                direct_one.append(await _ocr_direct(extractor, paths, 1))
                direct_two.append(await _ocr_direct(extractor, paths, 2))
            # what runs beside Tesseract for each job: the API (upload, polls) and the worker
            # processes themselves (S3, Postgres, queue; their sandbox children not counted)
            cpu_per_job = (cpu_s(*pids) - cpu) / (2 * OCR_ROUNDS * OCR_JOBS)
        ratio = statistics.median(b / a for a, b in zip(one, two, strict=True))
        ceiling = [b / a for a, b in zip(direct_one, direct_two, strict=True)]
        self.figures |= {
            "ocr_pages_per_s_1_worker": round(statistics.median(one), 2),
            "ocr_pages_per_s_2_workers": round(statistics.median(two), 2),
            "ocr_rounds_pages_per_s_1_vs_2": " ".join(
                f"{a:.2f}/{b:.2f}" for a, b in zip(one, two, strict=True)
            ),
            "ratio_ocr_2_workers_vs_1": round(ratio, 2),
            "sandbox_ocr_pages_per_s_1_2_in_process": (
                f"{statistics.median(direct_one):.2f} {statistics.median(direct_two):.2f}"
            ),
            "ratio_sandbox_ocr_2_vs_1_in_process": round(statistics.median(ceiling), 2),
            "api_and_worker_cpu_ms_per_ocr_job": round(cpu_per_job * 1000, 1),
        }

    def _scans(self) -> tuple[PdfOcrTextExtractor, list[Path]]:
        """The OCR ceiling of this machine right now: the worker's own extractor (same sandbox,
        same Tesseract settings) on the same files, one or two at a time, in this process."""
        paths = []
        for n in range(OCR_JOBS):
            path = self.root / f"scan-{n}.pdf"
            path.write_bytes(scanned_pdf(OCR_PAGES, MARKER, seed=n))
            paths.append(path)
        return PdfOcrTextExtractor(), paths

    async def _warm(self, client: httpx.AsyncClient, worker: Any) -> None:
        """Jobs until ``worker`` has run one (its fork server is up), or 10 tries."""
        data = text_pdf(1, MARKER)
        for _ in range(10):
            if worker.poll() is not None:
                raise RuntimeError("a worker exited; see its log")
            file_id = await upload(client, self.auth, _once(data), len(data), "warm.pdf", PDF)
            await until_final(client, self.auth, file_id)
            if has_forkserver(worker.pid):
                return
        raise RuntimeError("the new worker took none of 10 warm-up jobs")

    async def _pdfs(self, client: httpx.AsyncClient) -> None:
        import pdfplumber  # the baseline: what the worker's sandbox child runs, in this process

        docs = [text_pdf(pages, MARKER, seed=pages) for pages in PDF_PAGES]
        plumb, whalli, queue, uploads, extra = 0.0, 0.0, [], [], []
        for _ in range(EXTRACT_ROUNDS):
            for data in docs:
                started = time.perf_counter()
                with pdfplumber.open(io.BytesIO(data)) as pdf:
                    text = "\n".join(page.extract_text() or "" for page in pdf.pages)
                direct = time.perf_counter() - started
                assert MARKER in text
                started = time.perf_counter()
                file_id = await upload(client, self.auth, _once(data), len(data), "d.pdf", PDF)
                answered = time.perf_counter()
                seen, final, body = await until_final(client, self.auth, file_id, interval=POLL)
                if MARKER not in json.dumps(body):
                    raise RuntimeError(f"the extracted text lacks the marker: {body}")
                plumb, whalli = plumb + direct, whalli + final - started
                uploads.append(answered - started)
                queue.append(seen - answered)
                extra.append(final - seen - direct)
        queued = sum(queue)
        self.figures |= {
            "pdf_pages_per_round": sum(PDF_PAGES),
            "pdfplumber_in_process_s": round(plumb, 2),
            "whalli_upload_to_done_s": round(whalli, 2),
            "upload_ms_median": round(statistics.median(uploads) * 1000, 1),
            "queue_latency_ms_median": round(statistics.median(queue) * 1000, 1),
            "processing_minus_pdfplumber_ms_median": round(statistics.median(extra) * 1000, 1),
            "ratio_done_vs_pdfplumber": round(whalli / plumb, 3),
            "ratio_done_minus_queue_vs_pdfplumber": round((whalli - queued) / plumb, 3),
        }

    async def _ocr(self, client: httpx.AsyncClient) -> float:
        docs = [scanned_pdf(OCR_PAGES, MARKER, seed=n) for n in range(OCR_JOBS)]
        started = time.perf_counter()
        ids = [
            await upload(client, self.auth, _once(data), len(data), f"scan-{n}.pdf", PDF)
            for n, data in enumerate(docs)
        ]
        for file_id in ids:  # sequential polling: each wait overlaps the others' work
            _, _, body = await until_final(client, self.auth, file_id, interval=0.05)
            if MARKER not in json.dumps(body):
                raise RuntimeError(f"the OCR'd text lacks the marker: {body}")
        return OCR_JOBS * OCR_PAGES / (time.perf_counter() - started)


async def _ocr_direct(extractor: PdfOcrTextExtractor, paths: list[Path], concurrency: int) -> float:
    pending = list(paths)

    async def drain() -> None:
        while pending:
            result = await extractor.extract(pending.pop(), PDF)
            if MARKER not in result.text:
                raise RuntimeError("the OCR'd text lacks the marker")

    started = time.perf_counter()
    await asyncio.gather(*(drain() for _ in range(concurrency)))
    return OCR_JOBS * OCR_PAGES / (time.perf_counter() - started)


async def _once(data: bytes) -> Any:
    yield data


def _print_logs(root: Path) -> None:
    for log in sorted(root.glob("*.log")):
        print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]))


def run() -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="whalli-bench-files-") as tmp:
        root = Path(tmp)
        stack = EmbeddedStack(root / "stack", fast=True)
        urls, started = stack.up()
        procs: list[Any] = []
        try:
            Migrator(urls.database_url, default_migrations_dir()).apply()
            bench = Run(root, urls, procs)
            # on a shared machine, other work competes for the two cores: keep a trace of it
            load = os.getloadavg()[0]
            # extraction first: after gigabytes of writes and deletes the object store and
            # Postgres do background work that slowed the workers (see the docstring)
            asyncio.run(bench.extraction())
            asyncio.run(bench.uploads())
            bench.figures["load_average_1min_start_end"] = f"{load:.2f} {os.getloadavg()[0]:.2f}"
            return bench.figures
        except BaseException:
            _print_logs(root)
            raise
        finally:
            for proc in reversed(procs):
                stop(proc)
            stack.down(only=started)
