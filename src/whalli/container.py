"""The one composition root: core → gateways → adapters → services.

Nothing connects at import time or when the container is built: pools and clients are
``Resource`` providers opened by ``init_resources()`` and closed by ``shutdown_resources()``.
Tests swap adapters with ``container.adapters.<name>.override(...)``.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers

from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import DramatiqJobQueue
from whalli.adapters.postgres.health import PostgresHealthProbe
from whalli.adapters.postgres.pool import create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.redis.cache import RedisCache
from whalli.adapters.redis.chat_sessions import RedisChatSessionStore
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.health import RedisHealthProbe
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.adapters.s3.blob_storage import S3BlobStorage
from whalli.adapters.s3.client import create_minio
from whalli.adapters.s3.health import S3HealthProbe
from whalli.adapters.system.clock import SystemClock
from whalli.adapters.system.ids import UuidGenerator
from whalli.config import Secret, Settings
from whalli.domain.model.jobs import Ping
from whalli.domain.services.check_readiness import CheckReadiness
from whalli.domain.services.record_ping import RecordPing


def _reveal(secret: Secret | None) -> str:
    if secret is None:
        raise RuntimeError("a required server URL or key is not configured")
    return secret.reveal()


def _required(value: str | None) -> str:
    if value is None:
        raise RuntimeError("WHALLI_S3_ENDPOINT is not configured")
    return value


class Core(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)


class Gateways(containers.DeclarativeContainer):
    """Connections to the backing services, opened and closed as resources."""

    settings = providers.Dependency(instance_of=Settings)

    postgres = providers.Resource(
        create_pool,
        url=providers.Callable(lambda s: _reveal(s.database_url), settings),
        min_size=providers.Callable(lambda s: s.database_pool_min, settings),
        max_size=providers.Callable(lambda s: s.database_pool_max, settings),
    )
    redis = providers.Resource(
        create_redis, url=providers.Callable(lambda s: _reveal(s.redis_url), settings)
    )
    minio = providers.Singleton(
        create_minio,
        endpoint=providers.Callable(lambda s: _required(s.s3_endpoint), settings),
        access_key=providers.Callable(lambda s: _reveal(s.s3_access_key), settings),
        secret_key=providers.Callable(lambda s: _reveal(s.s3_secret_key), settings),
        secure=providers.Callable(lambda s: s.s3_secure, settings),
        region=providers.Callable(lambda s: s.s3_region, settings),
    )
    broker = providers.Singleton(
        create_broker,
        redis_url=providers.Callable(lambda s: _reveal(s.redis_url), settings),
        namespace=providers.Callable(lambda s: s.queue_name, settings),
        max_retries=providers.Callable(lambda s: s.job_max_retries, settings),
        min_backoff_ms=providers.Callable(lambda s: s.job_min_backoff_ms, settings),
        max_backoff_ms=providers.Callable(lambda s: s.job_max_backoff_ms, settings),
    )


class Adapters(containers.DeclarativeContainer):
    """Port implementations. Override any of these in tests to swap a technology."""

    settings = providers.Dependency(instance_of=Settings)
    gateways = providers.DependenciesContainer()

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidGenerator)
    unit_of_work = providers.Factory(PostgresUnitOfWork, pool=gateways.postgres)
    cache = providers.Singleton(RedisCache, client=gateways.redis)
    chat_sessions = providers.Singleton(RedisChatSessionStore, client=gateways.redis)
    rate_limiter = providers.Singleton(RedisRateLimiter, client=gateways.redis)
    blob_storage = providers.Singleton(
        S3BlobStorage,
        client=gateways.minio,
        bucket=providers.Callable(lambda s: s.s3_bucket, settings),
    )
    job_queue = providers.Singleton(
        DramatiqJobQueue,
        broker=gateways.broker,
        queue_name=providers.Callable(lambda s: s.queue_name, settings),
    )
    health_probes = providers.List(
        providers.Singleton(PostgresHealthProbe, pool=gateways.postgres),
        providers.Singleton(RedisHealthProbe, client=gateways.redis),
        providers.Singleton(
            S3HealthProbe,
            client=gateways.minio,
            bucket=providers.Callable(lambda s: s.s3_bucket, settings),
        ),
    )


class Services(containers.DeclarativeContainer):
    """Use cases, each built per call with fresh ports (a new unit of work every time)."""

    adapters = providers.DependenciesContainer()

    check_readiness = providers.Factory(CheckReadiness, probes=adapters.health_probes)
    record_ping = providers.Factory(RecordPing, cache=adapters.cache)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    core = providers.Container(Core, settings=settings)
    gateways = providers.Container(Gateways, settings=settings)
    adapters = providers.Container(Adapters, settings=settings, gateways=gateways)
    services = providers.Container(Services, adapters=adapters)


def build_container(settings: Settings) -> Container:
    container = Container(settings=settings)
    return container


def job_handlers(container: Container) -> dict[type, Any]:
    """Which use case handles which job type (the worker's dispatch table)."""

    async def ping(job: Ping) -> None:
        # Use cases that depend on async resources are resolved with await.
        service: RecordPing = await container.services.record_ping()
        await service.execute(job)

    return {Ping: ping}
