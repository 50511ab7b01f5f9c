"""Transaction semantics of the unit of work, on the in-memory one and on real Postgres."""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager

import msgspec
import pytest

from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.postgres.pool import PostgresPool, create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.errors import (
    ChatNotFound,
    Conflict,
    MessageNotFound,
    ServiceUnavailable,
    UserNotFound,
)

from .conftest import UowFactory
from .entities import a_chat, a_message, a_user, an_attachment, committed_world


class Boom(Exception):
    pass


async def test_committed_work_is_visible_to_the_next_unit_of_work(uow_factory: UowFactory) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user


async def test_work_left_without_commit_is_rolled_back(uow_factory: UowFactory) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)

    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.get(user.id)


async def test_an_exception_rolls_back_and_propagates(uow_factory: UowFactory) -> None:
    user = a_user()

    async def add_then_fail() -> None:
        async with uow_factory() as uow:
            await uow.users.add(user)
            raise Boom("halfway")

    with pytest.raises(Boom, match="halfway"):
        await add_then_fail()

    async with uow_factory() as check:
        assert await check.users.find_by_email(user.email) is None


async def test_an_explicit_rollback_discards_the_work_so_far(uow_factory: UowFactory) -> None:
    discarded, kept = a_user(), a_user()
    async with uow_factory() as uow:
        await uow.users.add(discarded)
        await uow.rollback()
        await uow.users.add(kept)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.find_by_email(discarded.email) is None
        assert await uow.users.get(kept.id) == kept


async def test_work_after_a_commit_needs_its_own_commit(uow_factory: UowFactory) -> None:
    first, second = a_user(), a_user()
    async with uow_factory() as uow:
        await uow.users.add(first)
        await uow.commit()
        await uow.users.add(second)

    async with uow_factory() as uow:
        assert await uow.users.get(first.id) == first
        assert await uow.users.find_by_email(second.email) is None


async def test_the_same_unit_of_work_can_be_entered_again(uow_factory: UowFactory) -> None:
    first, second = a_user(), a_user()
    uow = uow_factory()
    async with uow:
        await uow.users.add(first)
        await uow.commit()
    async with uow:
        await uow.users.add(second)
        await uow.commit()
    async with uow:
        assert [await uow.users.get(u.id) for u in (first, second)] == [first, second]


async def test_uncommitted_work_is_invisible_to_a_concurrent_unit_of_work(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    async with uow_factory() as writer, uow_factory() as reader:
        await writer.users.add(user)
        assert await reader.users.find_by_email(user.email) is None
        await writer.commit()
    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user


async def test_a_returned_entity_is_a_copy_until_it_is_updated(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        user = await uow.users.get(world.user.id)
        user.name = "Changed but not saved"
        assert (await uow.users.get(world.user.id)).name == world.user.name


async def test_repositories_refuse_to_work_outside_the_block(uow_factory: UowFactory) -> None:
    uow = uow_factory()
    with pytest.raises(RuntimeError, match="inside `async with uow:`"):
        await uow.users.get(a_user().id)


async def test_a_repository_is_one_object_that_follows_each_block(uow_factory: UowFactory) -> None:
    uow = uow_factory()
    users = uow.users  # taken outside the block, first used inside
    assert uow.users is users
    user = a_user()
    async with uow:
        await users.add(user)
        await uow.commit()
    async with uow:
        assert uow.users is users
        assert await users.get(user.id) == user


async def test_a_postgres_unit_of_work_makes_a_repository_on_its_first_use(
    pg_pool: PostgresPool,
) -> None:
    # a reply being generated holds its unit of work, untouched, until the reply is saved
    uow = PostgresUnitOfWork(pg_pool)
    assert not any(name in vars(uow) for name in ("users", "chats", "usage"))
    chats = uow.chats
    assert vars(uow)["chats"] is chats
    assert "users" not in vars(uow)


async def test_a_unit_of_work_cannot_be_entered_twice_at_once(uow_factory: UowFactory) -> None:
    uow = uow_factory()
    async with uow:
        with pytest.raises(RuntimeError, match="already in use"):
            await uow.__aenter__()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_database_surfaces_as_service_unavailable() -> None:
    url = f"postgresql://whalli:uow-s3cret@127.0.0.1:{_closed_port()}/whalli"
    async with asynccontextmanager(create_pool)(url, acquire_timeout=0.5) as pool:
        with pytest.raises(ServiceUnavailable, match="database is unavailable") as caught:
            async with PostgresUnitOfWork(pool):
                pass
    assert "s3cret" not in repr(caught.value)


async def test_concurrent_units_of_work_each_use_their_own_connection(
    uow_factory: UowFactory,
) -> None:
    users = [a_user() for _ in range(5)]

    async def add(index: int) -> None:
        async with uow_factory() as uow:
            await uow.users.add(users[index])
            await asyncio.sleep(0)
            await uow.commit()

    await asyncio.gather(*(add(i) for i in range(len(users))))

    async with uow_factory() as uow:
        assert [await uow.users.get(u.id) for u in users] == users


async def test_a_cancelled_unit_of_work_gives_a_usable_connection_back(
    migrated_database_url: str,
) -> None:
    async with asynccontextmanager(create_pool)(migrated_database_url, max_size=2) as pool:
        world = await committed_world(PostgresUnitOfWork(pool))
        attachment = an_attachment(world.project, world.user)
        async with PostgresUnitOfWork(pool) as uow:
            await uow.attachments.add(attachment)
            await uow.commit()

        waiting = asyncio.Event()

        async def wait_for_the_lock() -> None:
            async with PostgresUnitOfWork(pool) as uow:
                waiting.set()
                await uow.attachments.get_for_update(attachment.id)

        async with PostgresUnitOfWork(pool) as holder:
            await holder.attachments.get_for_update(attachment.id)
            task = asyncio.create_task(wait_for_the_lock())
            await waiting.wait()
            await asyncio.sleep(0.1)  # let the waiter's query reach the server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        for _ in range(3):  # both pool connections, in turn
            async with PostgresUnitOfWork(pool) as uow:
                assert await uow.attachments.get_for_update(attachment.id) == attachment


async def test_a_read_only_block_reads_committed_work_and_has_nothing_to_commit(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory().read_only() as uow:
        assert await uow.users.get(user.id) == user
        with pytest.raises(RuntimeError, match="nothing to commit"):
            await uow.commit()


async def test_a_unit_of_work_can_be_entered_read_only_and_normally_in_turn(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    uow = uow_factory()
    async with uow.read_only():
        assert await uow.users.find_by_email(user.email) is None
    async with uow:
        await uow.users.add(user)
        with pytest.raises(RuntimeError, match="already in use"):
            async with uow.read_only():
                pass
        await uow.commit()
    async with uow.read_only():
        assert await uow.users.get(user.id) == user
        with pytest.raises(RuntimeError, match="already in use"):
            await uow.__aenter__()
    with pytest.raises(RuntimeError, match="inside `async with uow:`"):
        await uow.users.get(user.id)


async def test_the_in_memory_read_only_block_refuses_writes_and_locks() -> None:
    store = MemoryStore()
    world = await committed_world(InMemoryUnitOfWork(store))
    async with InMemoryUnitOfWork(store).read_only() as uow:
        with pytest.raises(RuntimeError, match="cannot write or lock"):
            await uow.users.add(a_user())
        with pytest.raises(RuntimeError, match="cannot write or lock"):
            await uow.users.update(world.user)
        with pytest.raises(RuntimeError, match="cannot write or lock"):
            await uow.chats.delete(world.chat.id)
        with pytest.raises(RuntimeError, match="cannot write or lock"):
            await uow.projects.get_for_update(world.project.id)


async def test_after_a_read_only_block_the_connection_is_transactional_again(
    migrated_database_url: str,
) -> None:
    async with asynccontextmanager(create_pool)(migrated_database_url, max_size=1) as pool:
        uncommitted = a_user()
        async with pool.connection() as conn:
            pid = conn.info.backend_pid

        async def read_then_fail() -> None:
            async with PostgresUnitOfWork(pool).read_only() as uow:
                await uow.users.find_by_email(uncommitted.email)
                raise Boom("inside")

        async with PostgresUnitOfWork(pool).read_only() as uow:
            await uow.users.find_by_email(uncommitted.email)
        with pytest.raises(Boom, match="inside"):
            await read_then_fail()

        async with PostgresUnitOfWork(pool) as uow:
            await uow.users.add(uncommitted)

        async with PostgresUnitOfWork(pool) as uow:
            assert await uow.users.find_by_email(uncommitted.email) is None
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid  # the same connection, not a replacement


async def test_an_autocommit_block_makes_its_one_write_durable_without_commit(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    chat = a_chat(world.project, world.user)
    message = a_message(chat)

    async with uow_factory().autocommit() as uow:
        await uow.chats.add_with_messages(chat, [message])
        await uow.commit()  # nothing left to do: no error either

    async with uow_factory().read_only() as uow:
        assert await uow.chats.get(chat.id) == chat
        assert await uow.chats.list_messages(chat.id) == [message]


async def test_a_failed_write_in_an_autocommit_block_leaves_nothing(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    taken = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_messages([taken])
        await uow.commit()
    chat = a_chat(world.project, world.user)
    fresh = a_message(chat)
    clash = msgspec.structs.replace(a_message(chat), id=taken.id)

    with pytest.raises(Conflict):
        async with uow_factory().autocommit() as uow:
            await uow.chats.add_with_messages(chat, [fresh, clash])

    async with uow_factory().read_only() as uow:
        with pytest.raises(ChatNotFound):
            await uow.chats.get(chat.id)
        with pytest.raises(MessageNotFound):
            await uow.chats.get_message(fresh.id)


async def test_after_an_autocommit_block_the_connection_is_transactional_again(
    migrated_database_url: str,
) -> None:
    async with asynccontextmanager(create_pool)(migrated_database_url, max_size=1) as pool:
        uncommitted = a_user()
        async with PostgresUnitOfWork(pool).autocommit() as uow:
            await uow.users.find_by_email(uncommitted.email)

        async with PostgresUnitOfWork(pool) as uow:
            await uow.users.add(uncommitted)  # left without commit: rolled back

        async with PostgresUnitOfWork(pool) as uow:
            assert await uow.users.find_by_email(uncommitted.email) is None
