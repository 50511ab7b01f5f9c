"""Use case: ask for a link that verifies one's own address."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import EmailAlreadyVerified, EmailNotConfigured
from whalli.domain.model.jobs import SendEmailVerification
from whalli.ports.clock import Clock
from whalli.ports.job_queue import JobQueue
from whalli.ports.unit_of_work import UnitOfWork


class RequestEmailVerification(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID


class RequestEmailVerificationHandler:
    """Queue the email of a verification link to the caller's own address.

    Rules:
    - only on a server that sends email (``enabled``): else ``EmailNotConfigured`` (422);
    - an address already verified (an OAuth sign-in's, an operator-made account's, one a
      link verified before) is ``EmailAlreadyVerified`` (409): nothing is sent;
    - the email goes to the address the account has when the worker runs, and the link
      verifies that address only; the entrypoint counts the request against the caller's
      verification limit first (429);
    - a queue that cannot be reached is ``ServiceUnavailable`` (503): nothing was queued.
    """

    def __init__(self, uow: UnitOfWork, jobs: JobQueue, clock: Clock, *, enabled: bool) -> None:
        self._uow, self._jobs, self._clock, self._enabled = uow, jobs, clock, enabled

    async def execute(self, command: RequestEmailVerification) -> None:
        if not self._enabled:
            raise EmailNotConfigured()
        async with self._uow.read_only() as uow:
            user = await uow.users.get(command.user_id)  # (UserNotFound: deleted meanwhile)
        if user.email_verified:
            raise EmailAlreadyVerified()
        job = SendEmailVerification(user_id=user.id, requested_at=self._clock.now())
        await self._jobs.enqueue(job)
