"""Telling every API process that a user's credentials or account changed, and this process
that one of the user's credentials ended."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.auth.principal_cache import PrincipalCache
from whalli.ports.clock import Clock
from whalli.ports.credential_versions import CredentialVersions

log = logging.getLogger(__name__)

# Pauses before the bump's second and third attempts (a blip of the store), before the
# change's response.
RETRY_PAUSES_S = (0.05, 0.25)


class AccessChanges:
    """``changed(user_id)``, once a change committed, for every change that a request's
    authentication must see at once: a credential ended (a logout, a password change, a
    revoked key, a refresh token's reuse), the account disabled, deleted, or changed in what
    a principal holds (plan, role, name, email, instructions).

    This process forgets what it remembers of the user (``PrincipalCache.forget_user``) and
    bumps the user's credential version, which every other process reads beside each
    request's rate-limit count before it trusts what it remembers. A bump is tried three
    times (``RETRY_PAUSES_S``).

    A change that ends a credential or restricts an account (a revoked key, a logout, a
    password change, an admin's change, a deleted account) calls ``prepare`` before its
    commit: a store that cannot be reached refuses it, nothing saved. After the commit a
    bump that still fails is logged, not raised (the change is committed): while the store
    is down for every process none trusts what it remembers (each forgets it all), so only
    a process that reached the store between the two bumps and lost it since may trust an
    entry read before the change, until it ages out (``principal_cache.MAX_AGE_S``, 5 s).

    A change that ended a credential calls ``ended`` instead of ``changed``: the end is first
    noted in ``ends`` (this process's ``CredentialEnds``) at the ``clock``'s time, which is
    after the commit (a read made while the end was committing is before it), then
    ``changed`` follows.
    """

    def __init__(
        self,
        versions: CredentialVersions | None = None,
        principals: PrincipalCache | None = None,
        *,
        ends: CredentialEnds | None = None,
        clock: Clock | None = None,
    ) -> None:
        if ends is not None and clock is None:
            raise ValueError("ends are noted at a clock's time: give the clock too")
        self._versions, self._principals = versions, principals
        self._ends, self._clock = ends, clock

    async def prepare(self, user_id: UUID) -> None:
        """Before committing a change that ends a credential or restricts an account: bump the
        version now, so that a store this process cannot reach refuses the change
        (``ServiceUnavailable``, 503, nothing saved) rather than committing one that other
        processes might not see. ``changed`` bumps again after the commit."""
        if self._versions is not None:
            await _bump(self._versions, user_id)

    async def changed(self, user_id: UUID) -> None:
        if self._principals is not None:
            self._principals.forget_user(user_id)
        if self._versions is None:
            return
        try:
            await _bump(self._versions, user_id)
        except ServiceUnavailable as e:
            log.error("The credential version of user %s was not bumped: %s", user_id, e)

    async def ended(self, user_id: UUID) -> None:
        """Once a change that ended a credential of ``user_id`` committed: note the end in
        ``ends`` now, then ``changed``."""
        if self._ends is not None and self._clock is not None:
            self._ends.ended(user_id, self._clock.now())
        await self.changed(user_id)


async def _bump(versions: CredentialVersions, user_id: UUID) -> None:
    for pause in RETRY_PAUSES_S:
        try:
            await versions.bump(user_id)
            return
        except ServiceUnavailable:
            await asyncio.sleep(pause)
    await versions.bump(user_id)
