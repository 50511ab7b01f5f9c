"""`whalli worker`, wired by the composition root, consumes a job enqueued through the port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from redis.asyncio import Redis as AsyncRedis

from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import DramatiqJobQueue
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import Ping


def _worker_env(urls: StackUrls, queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WHALLI_DATABASE_URL": urls.database_url,
        "WHALLI_REDIS_URL": urls.redis_url,
        "WHALLI_S3_ENDPOINT": urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": urls.s3_secret_key,
        "WHALLI_QUEUE_NAME": queue,
        "WHALLI_LOG_DIR": str(tmp_path / "logs"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }


async def test_the_production_worker_consumes_a_job_from_the_port(
    stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    queue = f"q-{unique}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "whalli.entrypoints.cli.main", "worker"],
        env=_worker_env(stack_urls, queue, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client = redis.Redis.from_url(stack_urls.redis_url)
    broker = create_broker(stack_urls.redis_url, namespace=queue)
    try:
        async with AsyncRedis.from_url(stack_urls.redis_url) as async_client:
            await DramatiqJobQueue(broker, queue, client=async_client).enqueue(Ping(token=unique))
        key = f"whalli:cache:ping:{unique}"
        deadline = time.monotonic() + 60
        while client.get(key) is None and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert client.get(key) == b"pong"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        broker.close()
        client.close()
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert (tmp_path / "logs" / "whalli.log").exists()
    secret = stack_urls.redis_url.split("@")[0].rsplit(":", 1)[-1]
    assert secret not in (tmp_path / "logs" / "whalli.log").read_text()
