"""The links Whalli mails to an account (a password reset, an address verification): a page
of the web app with a token in the fragment, mailed by a worker job."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from whalli.ports.email_sender import EmailSender

log = logging.getLogger(__name__)


def page_under(web_url: str, page: str) -> str:
    """``page`` under ``web_url``'s path, its query kept (as the OAuth sign-in keeps it):
    appended to the whole URL, the page would land in a query (``?tenant=a/reset-password``)."""
    scheme, netloc, path, query, _ = urlsplit(web_url)
    return urlunsplit((scheme, netloc, path.rstrip("/") + page, query, ""))


def still_to_send(
    email: EmailSender | None, what: str, *, requested_at: datetime, now: datetime, ttl: timedelta
) -> EmailSender | None:
    """The mail server to send ``what`` with, or None (logged) when it is not to be sent: this
    worker has no mail server (turned off since the request), or the request waited in the
    queue longer than a link lives (its asker has given up; a link sent now would surprise
    them)."""
    if email is None:
        log.warning("%s was not sent: this worker has no mail server.", what)
        return None
    if now - requested_at > ttl:
        log.info("%s request waited too long in the queue: dropped.", what)
        return None
    return email


def lifetime(ttl: timedelta) -> str:
    """How long a link works, as its email says it: in hours when ``ttl`` is a whole number of
    them, else in minutes rounded down, so an email never promises more than the link gives
    (``WHALLI_EMAIL_VERIFICATION_TTL_S=600`` said "1 hours", rounded up to an hour)."""
    seconds = int(ttl.total_seconds())
    if seconds >= 3600 and seconds % 3600 == 0:
        count, unit = seconds // 3600, "hour"
    else:
        count, unit = max(1, seconds // 60), "minute"
    return f"{count} {unit}" + ("" if count == 1 else "s")
