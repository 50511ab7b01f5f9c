"""What this process read of recent credentials, trusted again only while the user's credential
version (``CredentialVersions``) has not changed since."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from uuid import UUID

import msgspec

from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.base import Value
from whalli.domain.model.users import User

# How long an entry is trusted at most, whatever the versions say: the bound on how long a
# change whose bump was lost (the store down just then) goes unseen by other processes.
MAX_AGE_S = 5.0


class KnownCredential(Value, frozen=True, kw_only=True):
    """A credential's database read: its user, and the key (an API key) or the end of its
    login session (``session_until``: when its last live refresh token expires), with the
    user's credential version read *before* that database read began."""

    user: User
    version: bytes
    api_key: ApiKey | None = None
    session_until: datetime | None = None

    def fresh_user(self) -> User:
        """A copy of the user (entities are mutable: a use case may change its own)."""
        return msgspec.structs.replace(self.user)


class PrincipalCache:
    """The last database read of up to ``size`` credentials (the least recently used leave
    first), each for at most ``max_age_s``.

    It decides nothing by itself: ``AuthenticateHandler`` uses an entry only when the user's
    credential version, read beside the request's rate-limit count, is the one the entry
    holds, and still checks what time alone ends (a key's expiry, the session's end, the
    access token's own). Every change to a user's credentials or account bumps their
    version after its commit (``AccessChanges``), so another process sees it at its next
    request; ``forget_user`` drops this process's entries at once.
    """

    def __init__(
        self,
        max_age_s: float = MAX_AGE_S,
        size: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._max_age, self._size, self._monotonic = max_age_s, size, monotonic
        self._entries: OrderedDict[Hashable, tuple[float, KnownCredential]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, credential: Hashable) -> KnownCredential | None:
        found = self._entries.get(credential)
        if found is None:
            return None
        stored_at, known = found
        if self._monotonic() - stored_at > self._max_age:
            del self._entries[credential]
            return None
        self._entries.move_to_end(credential)  # the least recently used leave first
        return known

    def put(self, credential: Hashable, known: KnownCredential) -> None:
        self._entries[credential] = (self._monotonic(), known)
        self._entries.move_to_end(credential)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def note_use(self, credential: Hashable, at: datetime) -> None:
        """The remembered API key's use recorded ``at`` (its age unchanged)."""
        found = self._entries.get(credential)
        if found is not None and found[1].api_key is not None:
            key = msgspec.structs.replace(found[1].api_key, last_used_at=at)
            self._entries[credential] = (found[0], msgspec.structs.replace(found[1], api_key=key))

    def forget(self, credential: Hashable) -> None:
        self._entries.pop(credential, None)

    def clear(self) -> None:
        self._entries.clear()

    def forget_user(self, user_id: UUID) -> None:
        """Drop every entry of ``user_id`` (a change this process made: its own next request
        reads again even if the version's bump was lost)."""
        for credential in [c for c, (_, k) in self._entries.items() if k.user.id == user_id]:
            del self._entries[credential]
