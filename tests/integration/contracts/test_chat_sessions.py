from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import msgspec
import pytest
from redis.asyncio import Redis

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.redis.chat_sessions import RedisChatSessionStore
from whalli.adapters.redis.client import create_redis
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import ChatSessionNotFound, ServiceUnavailable
from whalli.ports.chat_sessions import ChatSessionStore

Elapse = Callable[[float], Awaitable[None]]


@pytest.fixture(params=["fake", "real", "real-with-local-copies", "lean"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_session(
    clock: ManualClock, ttl: timedelta = timedelta(minutes=10), *, reply: bool = True
) -> ChatSession:
    return ChatSession.open(
        id=secrets.token_urlsafe(32),
        user_id=uuid.uuid4(),
        chat_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        user_message_id=uuid.uuid4(),
        reply_message_id=uuid.uuid4() if reply else None,
        model="gpt-4o-mini",
        now=clock.now(),
        params=GenerationParams(temperature=0.3, max_tokens=512),
        use_cache=False,
        attachment_ids=(uuid.uuid4(), uuid.uuid4()),
        ttl=ttl,
    )


async def test_a_saved_session_is_read_back_unchanged(
    session_store: ChatSessionStore, clock: ManualClock
) -> None:
    session = open_session(clock)
    await session_store.save(session, clock.now())
    assert await session_store.get(session.id) == session


async def test_an_unknown_session_is_not_found(session_store: ChatSessionStore) -> None:
    with pytest.raises(ChatSessionNotFound, match="not found or expired"):
        await session_store.get(secrets.token_urlsafe(32))


async def test_a_session_is_gone_once_it_expires(
    session_store: ChatSessionStore, clock: ManualClock, elapse: Elapse
) -> None:
    session = open_session(clock, ttl=timedelta(seconds=1))
    await session_store.save(session, clock.now())

    await elapse(1.2)

    with pytest.raises(ChatSessionNotFound, match="not found or expired"):
        await session_store.get(session.id)


async def test_saving_an_expired_session_leaves_nothing_readable(
    session_store: ChatSessionStore, clock: ManualClock
) -> None:
    session = open_session(clock)
    await session_store.save(session, clock.now())

    await session_store.save(session, session.expires_at)

    with pytest.raises(ChatSessionNotFound, match="not found or expired"):
        await session_store.get(session.id)


async def test_saving_again_replaces_the_session(
    session_store: ChatSessionStore, clock: ManualClock
) -> None:
    session = open_session(clock)
    await session_store.save(session, clock.now())
    changed = msgspec.structs.replace(session, model="claude-3-5-haiku")

    await session_store.save(changed, clock.now())

    assert (await session_store.get(session.id)).model == "claude-3-5-haiku"


async def test_delete_removes_the_session_and_missing_ones_are_fine(
    session_store: ChatSessionStore, clock: ManualClock
) -> None:
    session = open_session(clock)
    await session_store.save(session, clock.now())

    await session_store.delete(session.id)
    await session_store.delete(session.id)

    with pytest.raises(ChatSessionNotFound, match="not found or expired"):
        await session_store.get(session.id)


# --- finding the session of a reply still being generated -------------------------------------


def reply_of(session: ChatSession) -> uuid.UUID:
    assert session.reply_message_id is not None
    return session.reply_message_id


async def test_a_saved_session_is_found_by_its_reply_and_only_by_it(
    session_store: ChatSessionStore, clock: ManualClock
) -> None:
    one, two, unnamed = open_session(clock), open_session(clock), open_session(clock, reply=False)
    for session in (one, two, unnamed):
        await session_store.save(session, clock.now())
    unknown = uuid.uuid4()

    found = await session_store.live_session_ids([reply_of(one), unknown, reply_of(two)])

    assert found == {reply_of(one): one.id, reply_of(two): two.id}
    assert await session_store.live_session_ids([]) == {}
    assert await session_store.live_session_ids([unknown, unnamed.user_message_id]) == {}


async def test_a_reply_has_no_live_session_once_its_session_expires(
    session_store: ChatSessionStore, clock: ManualClock, elapse: Elapse
) -> None:
    short, long = open_session(clock, ttl=timedelta(seconds=1)), open_session(clock)
    await session_store.save(short, clock.now())
    await session_store.save(long, clock.now())

    await elapse(1.2)

    found = await session_store.live_session_ids([reply_of(short), reply_of(long)])
    assert found == {reply_of(long): long.id}


async def test_deleting_or_expiring_a_session_on_save_removes_its_reply_pointer(
    session_store: ChatSessionStore, clock: ManualClock
) -> None:
    deleted, expired, kept = open_session(clock), open_session(clock), open_session(clock)
    for session in (deleted, expired, kept):
        await session_store.save(session, clock.now())

    await session_store.delete(deleted.id)
    await session_store.save(expired, expired.expires_at)

    replies = [reply_of(deleted), reply_of(expired), reply_of(kept)]
    assert await session_store.live_session_ids(replies) == {reply_of(kept): kept.id}


async def test_a_session_stored_before_sessions_named_their_reply_still_decodes(
    redis_client: Redis, redis_prefix: str, clock: ManualClock
) -> None:
    store = RedisChatSessionStore(redis_client, prefix=redis_prefix + "session:")
    session = open_session(clock, reply=False)
    stored = msgspec.structs.asdict(session)
    del stored["reply_message_id"]  # what the previous release wrote
    key = redis_prefix + "session:" + session.id
    await redis_client.set(key, msgspec.msgpack.encode(stored), ex=60)

    assert await store.get(session.id) == session


async def test_an_unreadable_redis_entry_counts_as_not_found(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisChatSessionStore(redis_client, prefix=redis_prefix + "session:")
    await redis_client.set(redis_prefix + "session:garbled", b"\xc1 not msgpack", ex=60)
    with pytest.raises(ChatSessionNotFound, match="not found or expired"):
        await store.get("garbled")


async def test_an_unreachable_redis_raises_service_unavailable_without_the_password(
    closed_port: int, clock: ManualClock
) -> None:
    url = f"redis://:session-s3cret-pw@127.0.0.1:{closed_port}/0"
    async for client in create_redis(url):
        store = RedisChatSessionStore(client)
        with pytest.raises(ServiceUnavailable, match=r"^redis: connection failed$") as caught:
            await store.save(open_session(clock), clock.now())
        assert "session-s3cret-pw" not in str(caught.value)


# --- local copies (the stream request after a start, in the same process) ---------------------


async def test_a_session_saved_here_is_read_without_redis_while_its_copy_lasts(
    redis_client: Redis, redis_prefix: str, clock: ManualClock
) -> None:
    store = RedisChatSessionStore(redis_client, prefix=redis_prefix, local_copies_s=0.3)
    session = open_session(clock)
    await store.save(session, clock.now())
    await redis_client.delete(redis_prefix + session.id)  # only the local copy is left

    assert await store.get(session.id) == session

    await asyncio.sleep(0.4)  # the copy lapsed: Redis decides again
    with pytest.raises(ChatSessionNotFound):
        await store.get(session.id)


async def test_another_process_reads_the_session_from_redis(
    redis_client: Redis, redis_prefix: str, clock: ManualClock
) -> None:
    here = RedisChatSessionStore(redis_client, prefix=redis_prefix, local_copies_s=30)
    there = RedisChatSessionStore(redis_client, prefix=redis_prefix, local_copies_s=30)
    session = open_session(clock)
    await here.save(session, clock.now())

    assert await there.get(session.id) == session
    await here.delete(session.id)
    with pytest.raises(ChatSessionNotFound):
        await here.get(session.id)


async def test_a_session_deleted_by_a_process_without_its_copy_loses_its_reply_pointer(
    redis_client: Redis, redis_prefix: str, clock: ManualClock
) -> None:
    here = RedisChatSessionStore(redis_client, prefix=redis_prefix, local_copies_s=30)
    there = RedisChatSessionStore(redis_client, prefix=redis_prefix)
    session = open_session(clock)
    await here.save(session, clock.now())

    await there.delete(session.id)

    assert await here.live_session_ids([reply_of(session)]) == {}


async def test_local_copies_are_bounded_oldest_first(
    redis_client: Redis, redis_prefix: str, clock: ManualClock
) -> None:
    store = RedisChatSessionStore(
        redis_client, prefix=redis_prefix, local_copies_s=30, max_local_copies=3
    )
    sessions = [open_session(clock) for _ in range(5)]
    for session in sessions:
        await store.save(session, clock.now())
    await redis_client.delete(*(redis_prefix + s.id for s in sessions))

    for session in sessions[:2]:  # the two oldest copies were dropped
        with pytest.raises(ChatSessionNotFound):
            await store.get(session.id)
    for session in sessions[2:]:
        assert await store.get(session.id) == session
