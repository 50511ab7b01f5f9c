"""Predictable ids and tokens for tests."""

from __future__ import annotations

import itertools
import math
from uuid import UUID

from whalli.ports.ids import IdGenerator


class SequentialIds(IdGenerator):
    """Ids ``...-7000-8000-000000000001``, ``...02`` and so on: UUIDv7-shaped and increasing.

    Tokens are ``tok000…1``, ``tok000…2``, as long as a real token of the same ``nbytes`` (so
    length checks behave the same) but, of course, guessable.
    """

    def __init__(self, start: int = 1) -> None:
        self._ids = itertools.count(start)
        self._tokens = itertools.count(start)

    def new_id(self) -> UUID:
        return UUID(int=0x7 << 76 | 0b10 << 62 | next(self._ids))

    def new_token(self, nbytes: int = 32) -> str:
        length = max(4, math.ceil(nbytes * 4 / 3))
        return f"tok{next(self._tokens):0{length - 3}d}"
