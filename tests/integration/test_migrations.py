"""The migration runner, each test on a throwaway database created on the test server."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir
from whalli.domain.model.errors import MigrationError

REAL_TABLES = {
    "users", "projects", "memberships", "chats", "messages", "attachments", "transcriptions",
    "search_subscriptions", "search_results", "notifications", "schema_migrations",
    "refresh_tokens", "api_keys", "oauth_identities", "message_feedback", "chat_shares",
}  # fmt: skip


@pytest.fixture
def database_url(empty_database: str) -> str:
    """A throwaway database with no migration applied (conftest's ``empty_database``)."""
    return empty_database


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "migrations"
    path.mkdir()
    return path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def query(url: str, text: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(text.encode()).fetchall()


def tables(url: str) -> set[str]:
    rows = query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {str(r[0]) for r in rows}


def recorded(url: str) -> list[tuple[object, ...]]:
    return query(url, "SELECT version, name FROM schema_migrations ORDER BY version")


def test_migrations_apply_in_numeric_order_and_are_recorded(
    database_url: str, folder: Path
) -> None:
    # Each file needs the one before it, whatever order the folder lists them in.
    write(folder, "0010_third.sql", "ALTER TABLE a ADD COLUMN c int;")
    write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    write(folder, "0002_second.sql", "ALTER TABLE a ADD COLUMN b int;")
    write(folder, "README.md", "not a migration")

    applied = Migrator(database_url, folder).apply()

    assert applied == ["0001_first.sql", "0002_second.sql", "0010_third.sql"]
    assert recorded(database_url) == [
        (1, "0001_first.sql"), (2, "0002_second.sql"), (10, "0010_third.sql"),
    ]  # fmt: skip
    columns = query(
        database_url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'a' "
        "ORDER BY ordinal_position",
    )
    assert columns == [("id",), ("b",), ("c",)]


def test_a_second_run_applies_nothing(database_url: str, folder: Path) -> None:
    write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    migrator = Migrator(database_url, folder)
    migrator.apply()

    assert migrator.apply() == []
    assert recorded(database_url) == [(1, "0001_first.sql")]


def test_only_new_files_are_applied_on_a_later_run(database_url: str, folder: Path) -> None:
    write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    migrator = Migrator(database_url, folder)
    migrator.apply()
    write(folder, "0002_second.sql", "CREATE TABLE b (id int);")

    assert migrator.apply() == ["0002_second.sql"]
    assert {"a", "b"} <= tables(database_url)


def test_status_lists_every_file_with_whether_it_is_applied(
    database_url: str, folder: Path
) -> None:
    write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    migrator = Migrator(database_url, folder)
    assert migrator.status() == [("0001_first.sql", False)]
    assert "schema_migrations" not in tables(database_url)

    migrator.apply()
    write(folder, "0002_second.sql", "CREATE TABLE b (id int);")

    assert migrator.status() == [("0001_first.sql", True), ("0002_second.sql", False)]


def test_an_edited_applied_file_is_refused(database_url: str, folder: Path) -> None:
    path = write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    migrator = Migrator(database_url, folder)
    migrator.apply()
    path.write_text("CREATE TABLE a (id bigint);")
    write(folder, "0002_second.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationError, match=r"0001_first\.sql changed after it was applied"):
        migrator.apply()
    with pytest.raises(MigrationError, match=r"0001_first\.sql changed"):
        migrator.status()
    assert "b" not in tables(database_url)


def test_a_recorded_migration_whose_file_is_missing_is_refused(
    database_url: str, folder: Path
) -> None:
    path = write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    Migrator(database_url, folder).apply()
    path.unlink()

    with pytest.raises(MigrationError, match=r"0001_first\.sql is recorded .* file is missing"):
        Migrator(database_url, folder).apply()


def test_two_files_with_the_same_number_are_refused(database_url: str, folder: Path) -> None:
    write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    write(folder, "0001_other.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationError, match=r"0001_first\.sql and 0001_other\.sql share"):
        Migrator(database_url, folder).apply()
    assert tables(database_url) == set()


@pytest.mark.parametrize("name", ["1_first.sql", "0001-first.sql", "0001_First.sql", "0001_.sql"])
def test_a_malformed_file_name_is_refused(database_url: str, folder: Path, name: str) -> None:
    write(folder, name, "CREATE TABLE a (id int);")

    with pytest.raises(MigrationError, match=re.escape(name) + " is malformed"):
        Migrator(database_url, folder).apply()


def test_a_failing_migration_leaves_no_partial_state(database_url: str, folder: Path) -> None:
    write(folder, "0001_first.sql", "CREATE TABLE a (id int);")
    write(folder, "0002_broken.sql", "CREATE TABLE b (id int);\nSELECT 1 / 0;")
    write(folder, "0003_after.sql", "CREATE TABLE c (id int);")

    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed: division by zero"):
        Migrator(database_url, folder).apply()

    assert tables(database_url) == {"a", "schema_migrations"}
    assert recorded(database_url) == [(1, "0001_first.sql")]


def test_concurrent_runs_apply_each_file_exactly_once(database_url: str, folder: Path) -> None:
    # Plain CREATE TABLE fails if run twice; the sleep keeps the first runner busy meanwhile.
    for n in range(1, 6):
        write(
            folder, f"{n:04d}_step_{n}.sql", f"CREATE TABLE t{n} (id int); SELECT pg_sleep(0.05);"
        )
    barrier = threading.Barrier(3)
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(Migrator(database_url, folder).apply())
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert sorted(name for result in results for name in result) == sorted(
        p.name for p in folder.iterdir()
    )
    assert [len(r) for r in recorded(database_url)] == [2] * 5
    assert sorted(len(r) for r in results) == [0, 0, 5]


def test_the_real_migrations_apply_to_an_empty_database(database_url: str) -> None:
    migrator = Migrator(database_url, default_migrations_dir())

    applied = migrator.apply()

    assert applied[0] == "0001_initial.sql"
    assert tables(database_url) >= REAL_TABLES
    assert all(done for _, done in migrator.status())
    assert migrator.apply() == []


def test_the_migrations_folder_can_be_chosen_by_environment(
    monkeypatch: pytest.MonkeyPatch, folder: Path
) -> None:
    assert (default_migrations_dir() / "0001_initial.sql").is_file()
    monkeypatch.setenv("WHALLI_MIGRATIONS_DIR", str(folder))

    assert default_migrations_dir() == folder


def test_a_missing_folder_is_refused_with_its_name(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="nowhere does not exist"):
        Migrator(database_url, tmp_path / "nowhere").apply()


def test_existing_share_links_get_a_copy_of_their_messages_as_snapshot(
    database_url: str, folder: Path
) -> None:
    """0015 turns a link's message ids into a copy of those messages, in the chat's order;
    messages not in the snapshot (later ones), and ids of messages deleted since, are left out."""
    real = sorted(default_migrations_dir().glob("*.sql"))
    for path in real:
        if path.name < "0015":
            write(folder, path.name, path.read_text())
    Migrator(database_url, folder).apply()
    ids = {name: uuid.uuid4() for name in ("user", "project", "chat", "share", "gone")}
    ids |= {f"m{i}": uuid.UUID(int=i + 1) for i in range(3)}
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO users (id, email, created_at, updated_at) VALUES (%s, 'a@x.org', now(),"
            " now())",
            (ids["user"],),
        )
        conn.execute(
            "INSERT INTO projects (id, name, owner_id, created_at, updated_at)"
            " VALUES (%s, 'P', %s, now(), now())",
            (ids["project"], ids["user"]),
        )
        conn.execute(
            "INSERT INTO chats (id, project_id, user_id, title, created_at, updated_at)"
            " VALUES (%s, %s, %s, 'T', now(), now())",
            (ids["chat"], ids["project"], ids["user"]),
        )
        rows = [  # id, role, content, status, model, seconds
            (ids["m0"], "user", "Why?", "complete", None, 1),
            (ids["m1"], "assistant", "Because.", "aborted", "openai/gpt-4o", 2),
            (ids["m2"], "user", "Later", "complete", None, 3),
        ]
        for mid, role, content, status, model, seconds in rows:
            conn.execute(
                "INSERT INTO messages (id, chat_id, role, content, status, model, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s,"
                " timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => %s), now())",
                (mid, ids["chat"], role, content, status, model, seconds),
            )
        conn.execute(
            "INSERT INTO chat_shares (id, chat_id, created_by, token_hash, message_ids,"
            " created_at, title) VALUES (%s, %s, %s, 'h', %s, now(), 'T')",
            (ids["share"], ids["chat"], ids["user"], [ids["m1"], ids["gone"], ids["m0"]]),
        )
    for path in real:
        write(folder, path.name, path.read_text())
    Migrator(database_url, folder).apply()

    [(snapshot,)] = query(
        database_url, f"SELECT messages FROM chat_shares WHERE id = '{ids['share']}'"
    )
    columns = {r[0] for r in query(database_url, "SELECT column_name FROM information_schema"
                                   ".columns WHERE table_name = 'chat_shares'")}  # fmt: skip
    assert isinstance(snapshot, list)
    assert [(m["role"], m["content"], m["status"], m["model"]) for m in snapshot] == [
        ("user", "Why?", "complete", None),
        ("assistant", "Because.", "aborted", "openai/gpt-4o"),
    ]
    assert [datetime.fromisoformat(m["created_at"]) for m in snapshot] == [
        datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 2)
    ]
    assert "message_ids" not in columns


FOLDED = "'élodie':1 'москва':2"


@pytest.mark.parametrize(
    ("locale", "warned"),
    [
        ("LOCALE_PROVIDER libc LOCALE 'C'", True),
        ("LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'", False),
    ],
)
def test_a_database_whose_search_folds_only_ascii_case_is_warned_about(
    stack_urls: StackUrls, locale: str, warned: bool
) -> None:
    """The embedded Postgres is made with Unicode case rules (C.UTF-8); a database with a C
    character type folds only ASCII letters ('élodie' does not find 'Élodie'): ``whalli
    migrate`` says so."""
    name = f"whalli_loc_{uuid.uuid4().hex[:12]}"
    server = make_conninfo(stack_urls.database_url, dbname="postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' ").format(
                sql.Identifier(name)
            )
            + sql.SQL(locale)
        )
    try:
        url = make_conninfo(stack_urls.database_url, dbname=name)
        warning = Migrator(url, default_migrations_dir()).case_folding_warning()
        vector = query(url, "SELECT to_tsvector('simple', 'Élodie Москва')::text")[0][0]
        if warned:
            assert warning is not None
            assert "character type is C:" in warning
            assert vector != FOLDED
        else:
            assert warning is None
            assert vector == FOLDED
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
