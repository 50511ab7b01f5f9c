"""Use case: ask for a password reset link by email ("forgot password")."""

from __future__ import annotations

import msgspec

from whalli.domain.model.errors import PasswordResetNotConfigured
from whalli.domain.model.jobs import SendPasswordReset
from whalli.domain.model.users import normalize_email
from whalli.ports.clock import Clock
from whalli.ports.job_queue import JobQueue


class RequestPasswordReset(msgspec.Struct, frozen=True, kw_only=True):
    email: str


class RequestPasswordResetHandler:
    """Queue the email of a reset link to whoever holds an address.

    Rules:
    - only on a server that sends email (``enabled``): else ``PasswordResetNotConfigured``
      (422), before anything else;
    - the address is normalized as at sign-up (``InvalidEmail``, 422, for one that is none);
    - whether an account holds it is never told: the same job is queued either way, and the
      worker looks the account up (``SendPasswordResetHandler``), so neither the answer nor
      its timing differs; the entrypoint counts the request against the reset limits first
      (429, by address and by client, whether an account holds the address or not);
    - a queue that cannot be reached is ``ServiceUnavailable`` (503): nothing was queued.
    """

    def __init__(self, jobs: JobQueue, clock: Clock, *, enabled: bool) -> None:
        self._jobs, self._clock, self._enabled = jobs, clock, enabled

    def refuse_if_off(self) -> None:
        """``PasswordResetNotConfigured`` without email: asked first by the entrypoint, so a
        request to a server without email spends nothing of the reset limits."""
        if not self._enabled:
            raise PasswordResetNotConfigured()

    async def execute(self, command: RequestPasswordReset) -> None:
        self.refuse_if_off()
        email = normalize_email(command.email)
        await self._jobs.enqueue(SendPasswordReset(email=email, requested_at=self._clock.now()))
