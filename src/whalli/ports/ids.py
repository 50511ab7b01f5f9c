"""Identifiers for new entities and unguessable tokens."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID


class IdGenerator(Protocol):
    def new_id(self) -> UUID:
        """A new unique id, roughly time-ordered (UUIDv7) so that indexes stay compact."""
        ...

    def new_token(self, nbytes: int = 32) -> str:
        """An unguessable URL-safe token carrying at least ``nbytes`` * 8 random bits."""
        ...
