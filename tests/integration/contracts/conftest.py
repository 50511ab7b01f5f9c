"""Fixtures for the port contract suites: each port fixture is the fake, then the real adapter.

``backend`` is parametrized ("fake", "real"); a contract test asks for the port fixture (``cache``,
``session_store``, ...) and runs once per backend. ``elapse`` lets time pass for both: it
advances the fake's manual clock and, for the real backend, sleeps (Redis expires keys by its
own clock).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from minio import Minio
from redis.asyncio import Redis

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.rate_limiter import InMemoryRateLimiter
from whalli.adapters.redis.cache import RedisCache
from whalli.adapters.redis.chat_sessions import RedisChatSessionStore
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.adapters.redis.resp import RespClient, create_resp_client
from whalli.adapters.s3.blob_storage import S3BlobStorage
from whalli.adapters.s3.client import create_minio
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.cache import Cache
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.rate_limiter import RateLimiter

CONTRACT_BUCKET = "whalli-contracts"

redis_resource = asynccontextmanager(create_redis)
lean_resource = asynccontextmanager(create_resp_client)


@pytest.fixture(params=["fake", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def elapse(backend: str, clock: ManualClock) -> Callable[[float], Awaitable[None]]:
    async def _elapse(seconds: float) -> None:
        clock.advance(seconds)
        if backend != "fake":  # "real" and the variants some modules add ("relayed", ...)
            await asyncio.sleep(seconds)

    return _elapse


@pytest.fixture
async def redis_client(stack_urls: StackUrls) -> AsyncIterator[Redis]:
    async with redis_resource(stack_urls.redis_url) as client:
        yield client


@pytest.fixture
async def lean_redis(stack_urls: StackUrls) -> AsyncIterator[RespClient]:
    """The lean multiplexed client (``adapters/redis/resp``), for the "lean" backends: the
    Redis adapters as the app wires them."""
    async with lean_resource(stack_urls.redis_url) as client:
        yield client


def lean_or_none(backend: str, request: pytest.FixtureRequest) -> RespClient | None:
    if backend != "lean":
        return None
    lean: RespClient = request.getfixturevalue("lean_redis")
    return lean


@pytest.fixture
def redis_prefix(unique: str) -> str:
    return f"whalli:test:{unique}:"


@pytest.fixture(scope="session")
def minio_client(stack_urls: StackUrls) -> Minio:
    return create_minio(stack_urls.s3_endpoint, stack_urls.s3_access_key, stack_urls.s3_secret_key)


@pytest.fixture(scope="session")
async def s3_storage(minio_client: Minio) -> S3BlobStorage:
    storage = S3BlobStorage(minio_client, CONTRACT_BUCKET)
    await storage.ensure_bucket()
    return storage


@pytest.fixture
def cache(
    backend: str, clock: ManualClock, request: pytest.FixtureRequest, redis_prefix: str
) -> Cache:
    if backend == "fake":
        return InMemoryCache(clock)
    client: Redis = request.getfixturevalue("redis_client")
    return RedisCache(client, prefix=redis_prefix + "cache:", lean=lean_or_none(backend, request))


@pytest.fixture
def session_store(
    backend: str, clock: ManualClock, request: pytest.FixtureRequest, redis_prefix: str
) -> ChatSessionStore:
    if backend == "fake":
        return InMemoryChatSessionStore(clock)
    client: Redis = request.getfixturevalue("redis_client")
    local = 30.0 if backend == "real-with-local-copies" else 0.0  # see test_chat_sessions
    return RedisChatSessionStore(
        client,
        prefix=redis_prefix + "session:",
        local_copies_s=local,
        lean=lean_or_none(backend, request),
    )


@pytest.fixture
def rate_limiter(
    backend: str, clock: ManualClock, request: pytest.FixtureRequest, redis_prefix: str
) -> RateLimiter:
    if backend == "fake":
        return InMemoryRateLimiter(clock)
    client: Redis = request.getfixturevalue("redis_client")
    return RedisRateLimiter(
        client, prefix=redis_prefix + "rate:", lean=lean_or_none(backend, request)
    )


@pytest.fixture
def blob_storage(backend: str, request: pytest.FixtureRequest) -> BlobStorage:
    if backend == "fake":
        return InMemoryBlobStorage()
    storage: S3BlobStorage = request.getfixturevalue("s3_storage")
    return storage


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
