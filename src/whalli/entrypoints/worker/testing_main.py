"""A worker wired by hand, for integration tests and smoke checks without the full container.

``python -m whalli.entrypoints.worker.testing_main`` reads the usual ``WHALLI_*`` settings (no
``.env``) and handles only ``Ping`` jobs, recorded in the real Redis cache; any other job type
fails (and is retried, then dead-lettered), which the tests of failing jobs rely on. Options let
tests slow pings down and make dead workers noticed within seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis

from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.redis.cache import RedisCache
from whalli.config import Settings, load_settings
from whalli.domain.model.jobs import Ping
from whalli.domain.services.record_ping import RecordPing
from whalli.entrypoints.worker.dispatch import JobDispatcher
from whalli.entrypoints.worker.main import run_worker


class PingOnlyContainer:
    def __init__(self, redis_url: str, ping_delay_s: float = 0.0) -> None:
        self._redis_url = redis_url
        self._ping_delay_s = ping_delay_s
        self._client: Redis | None = None

    async def init_resources(self) -> None:
        self._client = Redis.from_url(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        await self._client.ping()

    async def shutdown_resources(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def job_dispatcher(self) -> JobDispatcher:
        if self._client is None:
            raise RuntimeError("resources are not initialised")
        record_ping = RecordPing(RedisCache(self._client))

        async def ping(job: Ping) -> None:
            if self._ping_delay_s:
                await asyncio.sleep(self._ping_delay_s)
            await record_ping.execute(job)

        return JobDispatcher({Ping: ping})


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m whalli.entrypoints.worker.testing_main")
    parser.add_argument("--ping-delay-s", type=float, default=0.0)
    parser.add_argument("--heartbeat-timeout-ms", type=int, default=60_000)
    parser.add_argument("--maintenance-chance", type=int, default=1_000)
    parser.add_argument("--max-deliveries", type=int, default=3)
    parser.add_argument("--time-limit-ms", type=int, default=600_000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings(dotenv=None)
    if settings.redis_url is None:
        print("WHALLI_REDIS_URL is required", file=sys.stderr)
        return 2
    redis_url = settings.redis_url.reveal()

    def broker(s: Settings) -> RedisBroker:
        return create_broker(
            redis_url,
            namespace=s.queue_name,
            max_retries=s.job_max_retries,
            min_backoff_ms=s.job_min_backoff_ms,
            max_backoff_ms=s.job_max_backoff_ms,
            max_deliveries=args.max_deliveries,
            time_limit_ms=args.time_limit_ms,
            heartbeat_timeout_ms=args.heartbeat_timeout_ms,
            maintenance_chance=args.maintenance_chance,
        )

    return run_worker(
        settings,
        lambda: PingOnlyContainer(redis_url, args.ping_delay_s),
        broker_factory=broker,
    )


if __name__ == "__main__":
    sys.exit(main())
