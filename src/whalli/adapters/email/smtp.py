"""Email over SMTP with the standard library's ``smtplib``, run in a thread (one connection per
message: a notification email is rare, and a held connection would time out between them).

TLS: ``starttls`` (port 587: plain connect, then STARTTLS before anything else; a server that
does not offer it is refused, never used in clear), ``ssl`` (port 465: TLS from the start) or
``none`` (a local relay). Login only when a username is given. Header values are cleaned of
CR/LF and other control characters before the message is built, so no text (a search query in
the subject) can add a header; an address holding any is refused.

Addresses: the sender is one mailbox, ``address`` or ``Name <address>`` (a name holding a comma
quoted, as RFC 5322 has it), its address the envelope sender too. A domain in Unicode (accounts
keep internationalized domains so) is sent in its ASCII form (A-labels) whenever the local part
is ASCII, so any server delivers it; only a non-ASCII local part needs the server's SMTPUTF8.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses, make_msgid
from typing import Literal

import idna

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
        self._sender, self._tls = sender_mailbox(sender), tls
        self._username, self._password = username, password
        self._timeout_s = timeout_s
        self._context = ssl_context or ssl.create_default_context()

    async def send(self, message: EmailMessage) -> None:
        mime = self.compose(message)
        await asyncio.to_thread(self._deliver, mime)

    def compose(self, message: EmailMessage) -> MimeMessage:
        mime = MimeMessage(policy=SMTP)
        mime["From"] = self._sender
        mime["To"] = _deliverable(_address(message.to))
        mime["Subject"] = _header_text(message.subject)
        mime["Date"] = formatdate(localtime=False, usegmt=True)
        mime["Message-ID"] = make_msgid(domain=self._sender.domain or None)
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
                smtp.send_message(mime, from_addr=self._sender.addr_spec)
        except smtplib.SMTPNotSupportedError as e:
            raise _unavailable("does not offer SMTPUTF8, which a non-ASCII address needs") from e
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


def sender_mailbox(value: str) -> Address:
    """``WHALLI_SMTP_FROM`` as one mailbox, its domain in ASCII; ``InvalidEmail`` unless it is
    exactly one (``Whalli, Inc. <a@b>`` is two: the name must be quoted)."""
    found = getaddresses([_address(value)])
    if len(found) != 1 or found[0][1].count("@") != 1 or "" in found[0][1].split("@"):
        raise InvalidEmail(
            "The sender must be one mailbox: an address, or Name <address> with a name holding "
            'a comma in quotes ("Whalli, Inc." <alerts@example.com>).'
        )
    name, addr_spec = found[0]
    try:
        return Address(display_name=name, addr_spec=_deliverable(addr_spec))
    except (ValueError, IndexError) as e:  # the parser's refusals of a malformed address
        raise InvalidEmail("The sender's address is not valid.") from e


def _deliverable(address: str) -> str:
    """``address`` with its domain in ASCII (A-labels) when its local part is ASCII: then no
    SMTPUTF8 is needed. A domain IDNA cannot encode stays as it is."""
    local, _, domain = address.rpartition("@")
    if not local.isascii() or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address


def _unavailable(what: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"The mail server {what}; the email was not sent.")
