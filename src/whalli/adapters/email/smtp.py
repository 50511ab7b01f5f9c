"""Email over SMTP with the standard library's ``smtplib``, run in a thread (one connection per
message: a notification email is rare, and a held connection would time out between them).

TLS: ``starttls`` (port 587: plain connect, then STARTTLS before anything else; a server that
does not offer it is refused, never used in clear), ``ssl`` (port 465: TLS from the start) or
``none`` (a local relay). Login only when a username is given. Header values are cleaned of
CR/LF and other control characters before the message is built, so no text (a search query in
the subject) can add a header; an address holding any is refused.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import Literal

from whalli.domain.model.errors import InvalidEmail, ServiceUnavailable
from whalli.ports.email_sender import EmailMessage, EmailSender

Tls = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}
SUBJECT_MAX = 200


class SmtpEmailSender(EmailSender):
    """Raises ``ServiceUnavailable`` when the server cannot be reached, refuses TLS, the login or
    the message (its reply code in the message, never the password), ``InvalidEmail`` for an
    address with control characters."""

    def __init__(
        self, *, host: str, sender: str, port: int = 0, tls: Tls = "starttls",
        username: str = "", password: str = "", timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self._host, self._port = host, port or DEFAULT_PORTS[tls]
        self._sender, self._tls = _address(sender), tls
        self._username, self._password = username, password
        self._timeout_s = timeout_s
        self._context = ssl_context or ssl.create_default_context()

    async def send(self, message: EmailMessage) -> None:
        mime = self.compose(message)
        await asyncio.to_thread(self._deliver, mime)

    def compose(self, message: EmailMessage) -> MimeMessage:
        mime = MimeMessage(policy=SMTP)
        mime["From"] = self._sender
        mime["To"] = _address(message.to)
        mime["Subject"] = _header_text(message.subject)
        mime["Date"] = formatdate(localtime=False, usegmt=True)
        mime["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        mime.set_content(message.text)
        if message.html is not None:
            mime.add_alternative(message.html, subtype="html")
        return mime

    def _deliver(self, mime: MimeMessage) -> None:
        try:
            with self._connect() as smtp:
                if self._tls == "starttls":
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise _unavailable("does not offer STARTTLS (set WHALLI_SMTP_TLS)")
                    smtp.starttls(context=self._context)
                    smtp.ehlo()
                if self._username:
                    smtp.login(self._username, self._password)
                smtp.send_message(mime)
        except smtplib.SMTPResponseException as e:
            raise _unavailable(f"answered {e.smtp_code}") from e
        except smtplib.SMTPRecipientsRefused as e:
            raise _unavailable("refused the recipient") from e
        except (smtplib.SMTPException, OSError) as e:
            raise _unavailable(f"could not be reached ({type(e).__name__})") from e

    def _connect(self) -> smtplib.SMTP:
        if self._tls == "ssl":
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout_s, context=self._context
            )
        return smtplib.SMTP(self._host, self._port, timeout=self._timeout_s)


def _header_text(text: str) -> str:
    """One line of at most ``SUBJECT_MAX`` characters: control characters (CR, LF) become
    spaces, whitespace runs one space."""
    line = " ".join("".join(" " if _control(c) else c for c in text).split())
    return line if len(line) <= SUBJECT_MAX else line[: SUBJECT_MAX - 1].rstrip() + "…"


def _control(char: str) -> bool:
    return ord(char) < 32 or 127 <= ord(char) < 160 or char in "\u2028\u2029"


def _address(value: str) -> str:
    if not value.strip() or any(_control(c) for c in value):
        raise InvalidEmail("An email address must not hold control characters.")
    return value.strip()


def _unavailable(what: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"The mail server {what}; the email was not sent.")
