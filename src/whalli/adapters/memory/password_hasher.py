"""A fast, insecure password hasher for tests: argon2 costs tens of milliseconds per call."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from whalli.domain.model.passwords import normalize_password
from whalli.ports.password_hasher import PasswordHasher


class FastPasswordHasher(PasswordHasher):
    """``fake$<cost>$<salt>$<sha256(salt + password)>``: salted, never use it outside tests.

    ``cost`` plays the part of argon2's parameters: hashes made with a lower cost need a
    rehash. ``dummy_verifications`` counts ``dummy_verify`` calls so tests can assert that an
    unknown email still paid for a verification.
    """

    def __init__(self, cost: int = 1) -> None:
        if cost < 1:
            raise ValueError("cost must be at least 1")
        self.cost = cost
        self.dummy_verifications = 0

    def hash(self, password: str) -> str:
        salt = secrets.token_hex(16)
        return f"fake${self.cost}${salt}${_digest(salt, password)}"

    def verify(self, hash: str, password: str) -> bool:
        parts = hash.split("$")
        if len(parts) != 4 or parts[0] != "fake":
            return False
        return hmac.compare_digest(parts[3], _digest(parts[2], password))

    def needs_rehash(self, hash: str) -> bool:
        parts = hash.split("$")
        if len(parts) != 4 or parts[0] != "fake" or not parts[1].isdigit():
            return True
        return int(parts[1]) < self.cost

    def dummy_verify(self) -> None:
        self.dummy_verifications += 1
        self.verify(f"fake${self.cost}$00${'0' * 64}", "not the password")


def _digest(salt: str, password: str) -> str:
    data = (salt + "\0" + normalize_password(password)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()
