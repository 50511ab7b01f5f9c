"""Who recent API keys belong to, in this process: a rate-limit hint, never an authentication."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID


class KeyOwners:
    """The owner of each API key this process accepted lately, by the key's hash, at most
    ``size`` of them (the least recently used leave first).

    A JWT names its user without the database, so the guard charges that user's rate budget
    while the database confirms the session. An API key names nobody by itself; this hint lets
    the guard do the same for a key it has seen before. It decides nothing: the key is still
    checked in the database on every request, and a key revoked since is refused (its
    request then counts against the IP as well, like any refused credential) and forgotten:
    it charges its owner once at most.
    """

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._owners: OrderedDict[str, UUID] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def owner(self, key_hash: str) -> UUID | None:
        user_id = self._owners.get(key_hash)
        if user_id is not None:
            self._owners.move_to_end(key_hash)
        return user_id

    def forget(self, key_hash: str) -> None:
        """A key refused (revoked, expired, unknown, its user disabled): no longer a hint, so
        replaying it charges its sender's IP only."""
        self._owners.pop(key_hash, None)

    def remember(self, key_hash: str, user_id: UUID) -> None:
        self._owners[key_hash] = user_id
        self._owners.move_to_end(key_hash)
        while len(self._owners) > self._size:
            self._owners.popitem(last=False)
