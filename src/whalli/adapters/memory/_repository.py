"""Shared base of the in-memory repositories: the transaction of the current unit of work."""

from __future__ import annotations

from collections.abc import Callable

from whalli.adapters.memory.store import MemoryTransaction
from whalli.domain.model.errors import InvalidInput

TransactionGetter = Callable[[], MemoryTransaction]


def check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidInput("limit must not be negative", field="limit")


class MemoryRepository:
    def __init__(self, transaction: TransactionGetter) -> None:
        self._tx = transaction
