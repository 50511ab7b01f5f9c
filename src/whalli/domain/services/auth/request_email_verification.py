"""Use case: ask for a link that verifies one's own address."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import ApiKeyNotAllowed, EmailAlreadyVerified, EmailNotConfigured
from whalli.domain.model.jobs import SendEmailVerification
from whalli.domain.model.users import User
from whalli.ports.clock import Clock
from whalli.ports.job_queue import JobQueue
from whalli.ports.unit_of_work import UnitOfWork


class RequestEmailVerification(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key


class RequestEmailVerificationHandler:
    """Queue the email of a verification link to the caller's own address.

    Rules:
    - only a session may ask (``refuse_api_key``: ``ApiKeyNotAllowed``, 403, before anything
      else, nor counted): a verified address is a way into the account (an OAuth sign-in
      with it joins it), which only a session may open, as only a session links a provider;
    - only on a server that sends email (``enabled``): else ``EmailNotConfigured`` (422);
    - an address already verified (an OAuth sign-in's, an operator-made account's, one a
      link verified before) is ``EmailAlreadyVerified`` (409): nothing is sent;
    - the entrypoint asks ``refuse`` (all three refusals) before it counts the request against
      the caller's verification limit (429), so a refused request uses none of it; ``execute``
      checks them again (the account may change in between);
    - the email goes to the address the account has when the worker runs, and the link
      verifies that address only;
    - a queue that cannot be reached is ``ServiceUnavailable`` (503): nothing was queued.
    """

    def __init__(self, uow: UnitOfWork, jobs: JobQueue, clock: Clock, *, enabled: bool) -> None:
        self._uow, self._jobs, self._clock, self._enabled = uow, jobs, clock, enabled

    @staticmethod
    def refuse_api_key(command: RequestEmailVerification) -> None:
        """``ApiKeyNotAllowed`` when an API key asks: the entrypoint asks it before it counts
        the request against the verification limit."""
        if command.api_key_id is not None:
            raise ApiKeyNotAllowed("An API key cannot verify the address; sign in to do it.")

    async def refuse(self, command: RequestEmailVerification) -> None:
        """Raise what ``execute`` would refuse the request with (403, 422, 409), if anything:
        the entrypoint asks before it counts the request against the verification limit."""
        await self._askable(command)

    async def execute(self, command: RequestEmailVerification) -> None:
        user = await self._askable(command)
        job = SendEmailVerification(user_id=user.id, requested_at=self._clock.now())
        await self._jobs.enqueue(job)

    async def _askable(self, command: RequestEmailVerification) -> User:
        self.refuse_api_key(command)
        if not self._enabled:
            raise EmailNotConfigured()
        async with self._uow.read_only() as uow:
            user = await uow.users.get(command.user_id)  # (UserNotFound: deleted meanwhile)
        if user.email_verified:
            raise EmailAlreadyVerified()
        return user
