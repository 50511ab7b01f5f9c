"""Numbered SQL migrations, applied in order, each in its own transaction, recorded with a checksum.

Concurrent runners are serialized by a session-level advisory lock: the second one waits, then
finds nothing left to do. Sync psycopg on purpose: this runs from the CLI and from test setup.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from whalli.domain.model.errors import MigrationError, ServiceUnavailable

# An arbitrary constant shared by every runner of this project (pg advisory locks are bigint keys).
_LOCK_KEY = 0x57_48_41_4C_4C_49_01  # "WHALLI" + 1
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def default_migrations_dir() -> Path:
    """The repository's top-level ``migrations/`` folder, or ``$WHALLI_MIGRATIONS_DIR``."""
    override = os.environ.get("WHALLI_MIGRATIONS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[4] / "migrations"


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    path: Path
    checksum: str


@dataclass(frozen=True)
class _Applied:
    name: str
    checksum: str


class Migrator:
    def __init__(self, database_url: str, directory: Path) -> None:
        self._url = database_url
        self._directory = directory

    def files(self) -> list[MigrationFile]:
        """The migration files in version order; raises ``MigrationError`` for a bad folder."""
        if not self._directory.is_dir():
            raise MigrationError(f"The migrations folder {self._directory} does not exist.")
        found: dict[int, MigrationFile] = {}
        for path in sorted(self._directory.glob("*.sql")):
            match = _FILE_NAME.match(path.name)
            if match is None:
                raise MigrationError(
                    f"Migration file {path.name} is malformed: expected NNNN_name.sql "
                    "(four digits, lower-case letters, digits and underscores)."
                )
            version = int(match.group(1))
            if version in found:
                raise MigrationError(
                    f"Migration files {found[version].name} and {path.name} share number "
                    f"{match.group(1)}."
                )
            checksum = hashlib.sha256(path.read_bytes()).hexdigest()
            found[version] = MigrationFile(version, path.name, path, checksum)
        return [found[v] for v in sorted(found)]

    def status(self) -> list[tuple[str, bool]]:
        """Every migration file with whether it is applied (read-only: creates nothing)."""
        files = self.files()
        with self._connect() as conn:
            try:
                row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
                applied = self._applied(conn) if row and row[0] else {}
            except psycopg.OperationalError as e:
                raise ServiceUnavailable("The database failed while reading migrations.") from e
        self._verify(files, applied)
        return [(f.name, f.version in applied) for f in files]

    def apply(self) -> list[str]:
        """Apply pending migrations in order; return the names of those applied by this call."""
        files = self.files()
        done: list[str] = []
        # The lock belongs to this session: closing the connection releases it, even on error.
        with self._connect() as conn:
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
                conn.execute(_CREATE_TABLE)
                applied = self._applied(conn)
            except psycopg.OperationalError as e:
                raise ServiceUnavailable("The database failed while reading migrations.") from e
            self._verify(files, applied)
            for migration in files:
                if migration.version not in applied:
                    self._apply_one(conn, migration)
                    done.append(migration.name)
        return done

    def case_folding_warning(self) -> str | None:
        """Why chat search would miss words by case in this database, if it would: with a C
        or POSIX character type (libc), Postgres folds only ASCII letters, so 'élodie' does not
        find 'Élodie'. The embedded Postgres is made with Unicode case rules (``C.UTF-8``);
        one created before that, or supplied so, gets this warning."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT datlocprovider, datctype FROM pg_database"
                " WHERE datname = current_database()"
            ).fetchone()
        if row is None or str(row[0]) != "c" or str(row[1]).upper() not in ("C", "POSIX"):
            return None
        return (
            f"this database's character type is {row[1]}: chat search ignores the case of "
            "ASCII letters only ('élodie' does not find 'Élodie'). Create it with a UTF-8 "
            "locale (e.g. initdb --locale-provider=builtin --builtin-locale=C.UTF-8) and "
            "restore a backup into it to search every script alike."
        )

    def _connect(self) -> psycopg.Connection[TupleRow]:
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise ServiceUnavailable("The database is unreachable.") from e

    @staticmethod
    def _applied(conn: psycopg.Connection[TupleRow]) -> dict[int, _Applied]:
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
        return {int(v): _Applied(str(n), str(c)) for v, n, c in rows}

    @staticmethod
    def _verify(files: list[MigrationFile], applied: dict[int, _Applied]) -> None:
        by_version = {f.version: f for f in files}
        for version, record in sorted(applied.items()):
            file = by_version.get(version)
            if file is None:
                raise MigrationError(
                    f"Migration {record.name} is recorded as applied but its file is missing."
                )
            if file.checksum != record.checksum:
                raise MigrationError(
                    f"Migration file {file.name} changed after it was applied "
                    "(checksum mismatch); add a new migration instead of editing it."
                )

    @staticmethod
    def _apply_one(conn: psycopg.Connection[TupleRow], migration: MigrationFile) -> None:
        sql = migration.path.read_bytes()
        if hashlib.sha256(sql).hexdigest() != migration.checksum:
            raise MigrationError(f"Migration file {migration.name} changed while migrating.")
        try:
            with conn.transaction():
                # No parameters: psycopg sends the file as one simple query (many statements).
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.OperationalError as e:
            raise ServiceUnavailable(f"The database failed while applying {migration.name}.") from e
        except psycopg.Error as e:
            # Server error texts describe the SQL, never the connection credentials.
            detail = e.diag.message_primary or type(e).__name__
            raise MigrationError(f"Migration {migration.name} failed: {detail}") from e
