"""Ids and tokens from the operating system's randomness."""

from __future__ import annotations

import os
import secrets
import threading
import time
from uuid import UUID

from whalli.ports.ids import IdGenerator

_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1
_SEQ_MAX = 0xFFF


class UuidGenerator(IdGenerator):
    """UUIDv7 (RFC 9562): 48-bit Unix ms, version, 12-bit ``rand_a``, variant, 62 random bits.

    ``rand_a`` is a counter seeded at random each new millisecond (RFC 9562 §6.2, method 1), so
    ids from one generator strictly increase even within a millisecond or if the clock steps back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._seq = 0

    def new_id(self) -> UUID:
        rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 11 seed the counter, 62 are rand_b
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._seq = rand >> 69  # below 2**11: room to count up within the millisecond
            else:
                self._seq += 1
                if self._seq > _SEQ_MAX:  # counter exhausted: borrow the next millisecond
                    self._last_ms += 1
                    self._seq = 0
            ms, seq = self._last_ms, self._seq
        value = (ms & _MS_MASK) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | (rand & _RAND_B_MASK)
        return UUID(int=value)

    def new_token(self, nbytes: int = 32) -> str:
        return secrets.token_urlsafe(nbytes)
