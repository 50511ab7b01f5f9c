"""Use case (worker): email a password reset link to the account holding an address."""

from __future__ import annotations

import logging
from datetime import timedelta

from whalli.domain.model.jobs import SendPasswordReset
from whalli.domain.services.auth.mailed_links import lifetime, page_under, still_to_send
from whalli.ports.clock import Clock
from whalli.ports.email_sender import EmailMessage, EmailSender
from whalli.ports.password_resets import PasswordResetTokens
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# Where the web app takes the new password: the token rides in the fragment, which browsers
# never send to a server (nor in a Referer), as the OAuth sign-in hands over its tokens.
RESET_PAGE = "/reset-password"
SUBJECT = "Reset your Whalli password"


class SendPasswordResetHandler:
    """Rules:
    - the account holding the address (under any of its spellings, as a sign-in finds it)
      gets one email with a link to ``{web_url}/reset-password#token=<token>``, good for
      ``ttl`` from now and only until its address or password changes (a reset uses it up);
    - no account holds it, or a disabled one: nothing is sent, and nothing naming the address
      is logged; an account without a password (made by an OAuth sign-in) gets the link too
      and may set one with it (the link proves the mailbox, as the provider did);
    - a request that waited in the queue longer than ``ttl`` is dropped: its asker has given
      up, and a link sent now would surprise them;
    - a mail server that fails raises ``ServiceUnavailable``: the queue tries again (the
      email is the job's only effect, so a retry sends at most the one that failed).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        tokens: PasswordResetTokens,
        email: EmailSender | None,
        clock: Clock,
        *,
        web_url: str,
        ttl: timedelta,
    ) -> None:
        self._uow, self._tokens, self._email, self._clock = uow, tokens, email, clock
        self._page, self._ttl = page_under(web_url, RESET_PAGE), ttl

    async def execute(self, job: SendPasswordReset) -> None:
        now = self._clock.now()
        email = still_to_send(
            self._email, "A password reset", requested_at=job.requested_at, now=now, ttl=self._ttl
        )
        if email is None:
            return
        async with self._uow.read_only() as uow:
            user = await uow.users.find_by_email(job.email)
        if user is None or user.disabled:
            log.info("A password reset was asked for an address without an enabled account.")
            return
        expires_at = now + self._ttl
        link = f"{self._page}#token={self._tokens.issue(user, expires_at)}"
        text = "\n".join(
            [
                f"Someone, hopefully you, asked to reset the password of the Whalli account "
                f"{user.email}.",
                "",
                f"Choose a new password here (the link works once, for {lifetime(self._ttl)}):",
                link,
                "",
                "If you did not ask for this, ignore this email: your password stays as it is.",
            ]
        )
        await email.send(EmailMessage(to=user.email, subject=SUBJECT, text=text))
        log.info("A password reset link was sent to user %s.", user.id)
