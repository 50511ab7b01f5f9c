"""``RedisCredentialVersions`` on the real Redis: a user is given a version by the first read,
that version holds until a bump, and a store that lost it gives a new one, never the old."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.credential_versions import VERSION_TTL_S, RedisCredentialVersions
from whalli.adapters.redis.resp import RespClient, create_resp_client
from whalli.domain.model.errors import ServiceUnavailable

PREFIX = "whalli:test:credver:"


@pytest.fixture
async def lean(stack_urls: StackUrls) -> AsyncIterator[RespClient]:
    async with asynccontextmanager(create_resp_client)(stack_urls.redis_url) as client:
        yield client


async def test_a_version_is_given_by_the_first_read_and_kept_until_a_bump(
    lean: RespClient,
) -> None:
    versions, user = RedisCredentialVersions(lean, prefix=PREFIX), uuid.uuid4()
    assert await lean.execute("GET", PREFIX + str(user)) is None

    first = await versions.current(user)
    assert isinstance(first, bytes)
    assert first
    assert await versions.current(user) == first  # the read gives one only once
    assert 0 < await lean.execute("TTL", PREFIX + str(user)) <= VERSION_TTL_S

    await versions.bump(user)
    bumped = await versions.current(user)
    assert bumped not in (None, first)
    assert await versions.current(uuid.uuid4()) not in (first, bumped)  # per user


async def test_a_lost_version_comes_back_new_never_as_it_was(lean: RespClient) -> None:
    versions, user = RedisCredentialVersions(lean, prefix=PREFIX), uuid.uuid4()
    before = await versions.current(user)
    await lean.execute("DEL", PREFIX + str(user))  # a restart without persistence, an eviction

    after = await versions.current(user)
    assert after is not None
    assert after != before


async def test_reads_sent_together_answer_their_own_users(lean: RespClient) -> None:
    versions = RedisCredentialVersions(lean, prefix=PREFIX)
    users = [uuid.uuid4() for _ in range(20)]
    for user in users[::2]:
        await versions.bump(user)
    firsts = await asyncio.gather(*(versions.current(u) for u in users))
    seconds = await asyncio.gather(*(versions.current(u) for u in users))
    assert firsts == seconds
    assert len(set(firsts)) == len(users)


async def test_an_unreachable_store_is_service_unavailable() -> None:
    async with asynccontextmanager(create_resp_client)("redis://127.0.0.1:1/0") as lean:
        versions = RedisCredentialVersions(lean, prefix=PREFIX)
        with pytest.raises(ServiceUnavailable):
            await versions.current(uuid.uuid4())
        with pytest.raises(ServiceUnavailable):
            await versions.bump(uuid.uuid4())
