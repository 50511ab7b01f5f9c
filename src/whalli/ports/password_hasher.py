"""One-way hashing of account passwords."""

from __future__ import annotations

from typing import Protocol


class PasswordHasher(Protocol):
    """A slow, salted password hash (argon2id in production).

    Every method is CPU-bound and deliberately slow (tens of milliseconds): async callers run
    them in a worker thread. Implementations NFC-normalize the password before hashing, so the
    caller may pass it as received.
    """

    def hash(self, password: str) -> str:
        """A self-describing hash string (algorithm, parameters, salt, digest) to store."""
        ...

    def verify(self, hash: str, password: str) -> bool:
        """Whether ``password`` matches ``hash``. A malformed or unknown hash is ``False``,
        never an error, so a corrupt row cannot be used to tell accounts apart."""
        ...

    def needs_rehash(self, hash: str) -> bool:
        """Whether ``hash`` was made with weaker parameters than the current ones (or cannot be
        read): after a successful login the caller re-hashes the password and stores it."""
        ...

    def dummy_verify(self) -> None:
        """Spend the time of one ``verify`` on nothing: called when the email is unknown (or the
        account has no password) so that response times do not reveal which accounts exist."""
        ...
