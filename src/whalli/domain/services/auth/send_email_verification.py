"""Use case (worker): email a link that verifies an account's address."""

from __future__ import annotations

import logging
from datetime import timedelta

from whalli.domain.model.errors import UserNotFound
from whalli.domain.model.jobs import SendEmailVerification
from whalli.domain.services.auth.mailed_links import lifetime, page_under, still_to_send
from whalli.ports.clock import Clock
from whalli.ports.email_sender import EmailMessage, EmailSender
from whalli.ports.email_verifications import EmailVerificationTokens
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# Where the web app confirms the address: the token rides in the fragment (never sent to a
# server), as a password reset link's does.
VERIFY_PAGE = "/verify-email"
SUBJECT = "Confirm your email address for Whalli"


class SendEmailVerificationHandler:
    """Rules:
    - the account gets one email at the address it has now, with a link to
      ``{web_url}/verify-email#token=<token>``, good for ``ttl`` and only for that address;
    - an account gone, disabled or already verified meanwhile gets nothing;
    - a request that waited in the queue longer than ``ttl`` is dropped, as a reset's is;
    - a mail server that fails raises ``ServiceUnavailable``: the queue tries again.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        tokens: EmailVerificationTokens,
        email: EmailSender | None,
        clock: Clock,
        *,
        web_url: str,
        ttl: timedelta,
    ) -> None:
        self._uow, self._tokens, self._email, self._clock = uow, tokens, email, clock
        self._page, self._ttl = page_under(web_url, VERIFY_PAGE), ttl

    async def execute(self, job: SendEmailVerification) -> None:
        now = self._clock.now()
        email = still_to_send(
            self._email, "An email verification", requested_at=job.requested_at, now=now,
            ttl=self._ttl,
        )  # fmt: skip
        if email is None:
            return
        async with self._uow.read_only() as uow:
            try:
                user = await uow.users.get(job.user_id)
            except UserNotFound:
                return
        if user.disabled or user.email_verified:
            return
        token = self._tokens.issue(user, now + self._ttl)
        text = "\n".join(
            [
                f"Confirm that {user.email} is the address of your Whalli account by opening "
                f"this link (it works for {lifetime(self._ttl)}):",
                f"{self._page}#token={token}",
                "",
                "A confirmed address receives the emails you ask for, such as the new results "
                "of your recurring searches. If you did not ask for this, ignore this email.",
            ]
        )
        await email.send(EmailMessage(to=user.email, subject=SUBJECT, text=text))
        log.info("An email verification link was sent to user %s.", user.id)
