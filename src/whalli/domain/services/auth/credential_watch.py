"""Whether the credential a long answer began with is still in force (a ``/v1`` completion
streamed for minutes has no chat session a stop could reach)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.principal import CredentialId
from whalli.ports.clock import Clock
from whalli.ports.credential_versions import CredentialVersions
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# How often a watch looks at most: an answer outlives its credential's end by about this much
CHECK_EVERY_S = 1.0


class CredentialWatch:
    """Watches over the credentials answers began with: ``watch(user_id, credential)`` gives one
    to ask between the pieces of an answer.

    Rules:
    - a watch answers at once, with no I/O, until ``every_s`` passed since it last looked (or
      since it began: the request's authentication just read the credential): a bounded rate,
      never one look per token;
    - a look reads the user's credential version (``CredentialVersions``, one small read):
      every end of a credential and every disabling or deletion of an account bumps it, in
      every process (``AccessChanges``), so the version of the watch's last look still there
      means nothing changed; any other (the first look, a bump since, a store that cannot
      tell) reads the database, as ``AuthenticateHandler`` reads a request's credential: the
      account neither disabled nor deleted, the API key neither revoked nor expired, or the
      login session still active. The version, read before that read, is kept for the next
      look only if the credential is still in force;
    - a database that does not answer ends nothing (the answer goes on; the next look reads
      again); a credential not known (both ids ``None``) is not watched.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        versions: CredentialVersions | None = None,
        *,
        every_s: float = CHECK_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow, self._clock, self._versions = uow, clock, versions
        self._every_s, self._monotonic = every_s, monotonic

    def watch(self, user_id: UUID, credential: CredentialId) -> CredentialCheck | None:
        if credential.api_key_id is None and credential.login_session_id is None:
            return None
        return CredentialCheck(
            lambda: self._version(user_id),
            lambda: self._in_force(user_id, credential),
            every_s=self._every_s,
            monotonic=self._monotonic,
        )

    async def _version(self, user_id: UUID) -> bytes | None:
        if self._versions is None:
            return None
        try:
            return await self._versions.current(user_id)
        except ServiceUnavailable:
            return None

    async def _in_force(self, user_id: UUID, credential: CredentialId) -> bool | None:
        """Whether the database says the credential is in force; ``None``: it did not answer."""
        try:
            async with self._uow.read_only() as uow:
                if credential.api_key_id is not None:
                    found = await uow.api_keys.get_with_user(credential.api_key_id)
                    if found is None:
                        return False
                    key, user = found
                    return (
                        key.is_active(self._clock.now())
                        and user.id == user_id
                        and not user.disabled
                    )
                assert credential.login_session_id is not None
                session = await uow.users.find_with_session_end(
                    user_id, credential.login_session_id
                )
        except ServiceUnavailable as e:
            log.warning("The credential of user %s was not checked: %s", user_id, e)
            return None
        if session is None or session[0].disabled or session[1] is None:
            return False
        return self._clock.now() < session[1]


class CredentialCheck:
    """One answer's watch (see ``CredentialWatch``)."""

    def __init__(
        self,
        version: Callable[[], Awaitable[bytes | None]],
        in_force: Callable[[], Awaitable[bool | None]],
        *,
        every_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._read_version, self._read_in_force = version, in_force
        self._every_s, self._monotonic = every_s, monotonic
        self._looked = monotonic()
        self._version: bytes | None = None  # of the last look that found it in force

    async def ended(self) -> bool:
        """Whether the credential ended (looked at no more often than the watch's rate)."""
        now = self._monotonic()
        if now - self._looked < self._every_s:
            return False
        self._looked = now
        version = await self._read_version()
        if version is not None and version == self._version:
            return False
        in_force = await self._read_in_force()
        if in_force is None:
            return False
        self._version = version if in_force else None
        return not in_force
