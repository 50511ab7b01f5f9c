"""argon2id password hashes (argon2-cffi), at or above OWASP's minimum parameters."""

from __future__ import annotations

import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from whalli.domain.model.passwords import normalize_password
from whalli.ports.password_hasher import PasswordHasher

# OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1 is the floor.
MIN_MEMORY_KIB = 19_456
MIN_TIME_COST = 2
MIN_PARALLELISM = 1
HASH_LEN = 32
SALT_LEN = 16


class Argon2PasswordHasher(PasswordHasher):
    """argon2id with configurable cost; refuses parameters below the OWASP floor.

    ``needs_rehash`` is true for hashes that are weaker than the current parameters (less
    memory or fewer passes, shorter salt or digest, argon2i/argon2d, an older version), not for
    stronger ones: lowering the configured cost never downgrades stored hashes.
    """

    def __init__(
        self,
        *,
        memory_kib: int = MIN_MEMORY_KIB,
        time_cost: int = MIN_TIME_COST,
        parallelism: int = MIN_PARALLELISM,
    ) -> None:
        if memory_kib < MIN_MEMORY_KIB:
            raise ValueError(f"argon2id memory must be at least {MIN_MEMORY_KIB} KiB")
        if time_cost < MIN_TIME_COST:
            raise ValueError(f"argon2id time cost must be at least {MIN_TIME_COST}")
        if parallelism < MIN_PARALLELISM:
            raise ValueError(f"argon2id parallelism must be at least {MIN_PARALLELISM}")
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=HASH_LEN,
            salt_len=SALT_LEN,
            type=argon2.Type.ID,
        )
        # ``dummy_verify`` checks against a hash made with the current parameters, so it costs
        # what a real login costs; made here, not on first use, so the first unknown email is
        # not slower than the rest. Its password is a secret nobody knows.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        return self._hasher.hash(normalize_password(password))

    def verify(self, hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(hash, normalize_password(password))
        except (VerificationError, InvalidHashError):
            # VerifyMismatchError is a VerificationError; a corrupt hash fails closed.
            return False

    def needs_rehash(self, hash: str) -> bool:
        try:
            stored = argon2.extract_parameters(hash)
        except InvalidHashError:
            return True
        wanted = self._hasher
        return (
            stored.type is not argon2.Type.ID
            or stored.version < argon2.low_level.ARGON2_VERSION
            or stored.memory_cost < wanted.memory_cost
            or stored.time_cost < wanted.time_cost
            or stored.hash_len < wanted.hash_len
            or stored.salt_len < wanted.salt_len
        )

    def dummy_verify(self) -> None:
        self.verify(self._dummy_hash, "not the password")
