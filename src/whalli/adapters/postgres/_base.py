"""What every Postgres repository shares: the current connection, queries, error translation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow, dict_row

from whalli.domain.model.errors import (
    AlreadyMember,
    AttachmentNotFound,
    ChatNotFound,
    Conflict,
    EmailAlreadyRegistered,
    InvalidInput,
    MessageNotFound,
    NotFound,
    ProjectNotFound,
    SearchSubscriptionNotFound,
    ServiceUnavailable,
    UserNotFound,
    WhalliError,
)

ID_TAKEN = "This id is already taken."
ConnectionGetter = Callable[[], AsyncConnection[TupleRow]]
Row = dict[str, Any]

# Unique constraints with a rule of their own; any other unique violation is a plain Conflict.
_UNIQUE: dict[str, type[WhalliError]] = {
    "users_email_key": EmailAlreadyRegistered,
    "memberships_pkey": AlreadyMember,
}
# A foreign key "<table>_<column>_fkey" that points nowhere means the parent is not found.
_MISSING_PARENT: dict[str, type[WhalliError]] = {
    "project_id": ProjectNotFound,
    "user_id": UserNotFound,
    "owner_id": UserNotFound,
    "created_by": UserNotFound,
    "chat_id": ChatNotFound,
    "message_id": MessageNotFound,
    "attachment_id": AttachmentNotFound,
    "subscription_id": SearchSubscriptionNotFound,
}


@contextmanager
def translated() -> Iterator[None]:
    """Turn driver exceptions into domain errors (messages never carry connection details).

    Note that in Postgres a failed statement aborts the transaction: after such an error only
    leaving the unit of work (rollback) is meaningful. The documented expected outcomes
    (email taken, already a member, message for a missing chat) are detected without failing.
    """
    try:
        yield
    except errors.UniqueViolation as e:
        name = e.diag.constraint_name or ""
        if name in _UNIQUE:
            raise _UNIQUE[name]() from e
        raise Conflict(ID_TAKEN if name.endswith("_pkey") else None) from e
    except errors.ForeignKeyViolation as e:
        name, table = e.diag.constraint_name or "", e.diag.table_name or ""
        column = name.removeprefix(f"{table}_").removesuffix("_fkey")
        raise _MISSING_PARENT.get(column, NotFound)() from e
    except psycopg.IntegrityError as e:
        raise Conflict() from e
    except psycopg.DataError as e:
        raise InvalidInput("A value could not be stored.") from e
    except (errors.DeadlockDetected, errors.SerializationFailure) as e:
        raise ServiceUnavailable(
            "The request collided with another one changing the same data; try again."
        ) from e
    except (psycopg.OperationalError, psycopg.InterfaceError) as e:
        raise ServiceUnavailable("The database is unavailable.") from e


def check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidInput("limit must not be negative", field="limit")


class PostgresRepository:
    """Base of the repositories: bound to whatever connection the unit of work holds now."""

    def __init__(self, connection: ConnectionGetter) -> None:
        self._connection = connection

    async def _one(self, query: LiteralString, params: Mapping[str, Any]) -> Row | None:
        with translated():
            async with self._connection().cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchone()

    async def _all(self, query: LiteralString, params: Mapping[str, Any]) -> list[Row]:
        with translated():
            async with self._connection().cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall()

    async def _run(self, query: LiteralString, params: Mapping[str, Any]) -> int:
        """Execute a write; return the number of rows it touched."""
        with translated():
            async with self._connection().cursor() as cur:
                await cur.execute(query, params)
                return cur.rowcount


def columns(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def placeholders(names: tuple[str, ...]) -> str:
    return ", ".join(f"%({n})s" for n in names)


def assignments(names: tuple[str, ...]) -> str:
    return ", ".join(f"{n} = %({n})s" for n in names)
