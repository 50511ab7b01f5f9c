"""In-process tables behind the in-memory unit of work, with the schema's keys and references.

The store holds committed rows only. A :class:`MemoryTransaction` copies a table the first time it
touches it, works on the copy, and publishes the rows it changed on commit, so that, as in
Postgres, leaving without commit discards everything. Foreign keys, unique columns and cascades
(``schema.py``) mirror the migrations, so that the fake raises what the real adapter raises.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Hashable
from typing import Any

import msgspec

from whalli.adapters.memory.schema import DUPLICATE_KEY, FOREIGN_KEYS, TABLES, UNIQUES
from whalli.domain.model.errors import Conflict, InvalidInput, WhalliError

Table = dict[Hashable, Any]


class MemoryStore:
    """Committed rows by table and primary key; shared by the units of work of one process."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {name: {} for name in TABLES}
        self._locks: dict[tuple[str, Hashable], asyncio.Lock] = {}

    def row_lock(self, table: str, key: Hashable) -> asyncio.Lock:
        return self._locks.setdefault((table, key), asyncio.Lock())


def _values(row: Any, columns: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(row, c) for c in columns)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _check_unique(name: str, key: Hashable, row: Any, rows: Table) -> None:
    for unique in UNIQUES:
        if unique.table == name:
            value = _values(row, unique.columns)
            if any(k != key and _values(r, unique.columns) == value for k, r in rows.items()):
                raise unique.error()


class MemoryTransaction:
    """Copy on first touch, publish on commit; rows go in and out as copies."""

    def __init__(self, store: MemoryStore, *, read_only: bool = False) -> None:
        self._store = store
        self._read_only = read_only
        self._base: dict[str, Table] = {}
        self._work: dict[str, Table] = {}
        self._locks: dict[tuple[str, Hashable], asyncio.Lock] = {}

    def table(self, name: str) -> Table:
        if name not in self._work:
            self._base[name] = dict(self._store.tables[name])
            self._work[name] = dict(self._base[name])
        return self._work[name]

    def get(self, name: str, key: Hashable, missing: type[WhalliError]) -> Any:
        row = self.table(name).get(key)
        if row is None:
            raise missing()
        return copy.copy(row)

    def find(self, name: str, key: Hashable) -> Any:
        row = self.table(name).get(key)
        return None if row is None else copy.copy(row)

    def select(self, name: str, where: Callable[[Any], bool]) -> list[Any]:
        return [copy.copy(row) for row in self.table(name).values() if where(row)]

    def insert(self, name: str, key: Hashable, row: Any) -> None:
        self._check_writable()
        self._check(name, key, row, self.table(name))
        if key in self.table(name):
            if name in DUPLICATE_KEY:
                raise DUPLICATE_KEY[name]()
            raise Conflict("This id is already taken.")
        self.table(name)[key] = copy.copy(row)

    def replace(self, name: str, key: Hashable, row: Any, missing: type[WhalliError]) -> None:
        self._check_writable()
        if key not in self.table(name):
            raise missing()
        self._check(name, key, row, self.table(name))
        self.table(name)[key] = copy.copy(row)

    def delete(self, name: str, key: Hashable, missing: type[WhalliError]) -> None:
        self._check_writable()
        if key not in self.table(name):
            raise missing()
        doomed: list[tuple[str, Hashable]] = []
        orphans: list[tuple[str, Hashable, str]] = []
        # Raises before anything is deleted, as Postgres does.
        self._collect(name, key, doomed, orphans)
        for table, doomed_key in doomed:
            self.table(table).pop(doomed_key, None)
        for table, orphan_key, column in orphans:
            rows = self.table(table)
            if orphan_key in rows:  # not deleted by another cascade
                rows[orphan_key] = msgspec.structs.replace(rows[orphan_key], **{column: None})

    def _collect(
        self,
        name: str,
        key: Hashable,
        doomed: list[tuple[str, Hashable]],
        orphans: list[tuple[str, Hashable, str]],
    ) -> None:
        doomed.append((name, key))
        for fk in FOREIGN_KEYS:
            if fk.parent != name:
                continue
            children = [k for k, r in self.table(fk.table).items() if getattr(r, fk.column) == key]
            if fk.set_null:
                orphans.extend((fk.table, child, fk.column) for child in children)
                continue
            if children and not fk.cascade:
                raise Conflict(f"Rows in {fk.table} still refer to this row.")
            for child in children:
                self._collect(fk.table, child, doomed, orphans)

    def _check(self, name: str, key: Hashable, row: Any, rows: Table) -> None:
        if _has_nul(msgspec.to_builtins(row)):  # Postgres text and jsonb refuse NUL
            raise InvalidInput("A value could not be stored.")
        _check_unique(name, key, row, rows)
        for fk in FOREIGN_KEYS:
            if fk.table == name:
                parent = getattr(row, fk.column)
                if parent is not None and parent not in self.table(fk.parent):
                    raise fk.missing()

    async def lock(self, name: str, key: Hashable) -> None:
        """Hold the row until commit or rollback; then read its latest committed version."""
        self._check_writable()
        if (name, key) in self._locks:
            return
        lock = self._store.row_lock(name, key)
        await lock.acquire()
        self._locks[(name, key)] = lock
        work, base = self.table(name), self._base[name]
        if work.get(key) is base.get(key):  # not changed here: refresh like SELECT FOR UPDATE
            latest = self._store.tables[name].get(key)
            for rows in (work, base):
                if latest is None:
                    rows.pop(key, None)
                else:
                    rows[key] = latest

    async def try_lock(self, name: str, key: Hashable) -> bool:
        """``lock`` unless another transaction holds the row (``FOR UPDATE SKIP LOCKED``)."""
        if (name, key) not in self._locks and self._store.row_lock(name, key).locked():
            return False
        await self.lock(name, key)
        return True

    def _check_writable(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot write or lock")

    def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work has nothing to commit")
        changes = [
            (name, key, work.get(key))
            for name, work in self._work.items()
            for key in work.keys() | self._base[name].keys()
            if work.get(key) is not self._base[name].get(key)
        ]
        merged = {name: dict(self._store.tables[name]) for name, _, _ in changes}
        for name, key, row in changes:
            if row is None:
                merged[name].pop(key, None)
            else:
                merged[name][key] = row
        # A unit of work that committed meanwhile may have taken a unique value.
        for name, key, row in changes:
            if row is not None:
                _check_unique(name, key, row, merged[name])
        self._store.tables.update(merged)
        self._reset()

    def rollback(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._base.clear()
        self._work.clear()
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()
