"""``SmtpEmailSender`` against a loopback SMTP server: plain delivery, STARTTLS with login, TLS
from the first byte, headers no text can inject into, and what each failure becomes."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from email.utils import getaddresses
from typing import Any

import pytest
import trustme

from tests.support.fake_smtp import FakeSmtpServer
from whalli.adapters.email.smtp import SmtpEmailSender, Tls
from whalli.domain.model.errors import InvalidEmail, ServiceUnavailable
from whalli.ports.email_sender import EmailMessage

SENDER = "Whalli <alerts@whalli.test>"
MESSAGE = EmailMessage(to="ada@example.com", subject="3 new results for pg", text="Hello\n.\nBye")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def plain() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


def sender(server: FakeSmtpServer, tls: Tls = "none", **kw: object) -> SmtpEmailSender:
    return SmtpEmailSender(host="127.0.0.1", port=server.port, sender=SENDER, tls=tls,
                           timeout_s=5, **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_a_message_is_delivered_as_plain_text_to_its_recipient(plain: FakeSmtpServer) -> None:
    await sender(plain).send(MESSAGE)

    [received] = plain.messages
    assert (received.mail_from, received.rcpt_to) == ("alerts@whalli.test", ["ada@example.com"])
    parsed = received.parsed()
    assert parsed["Subject"] == "3 new results for pg"
    assert parsed["From"] == SENDER
    assert parsed["To"] == "ada@example.com"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().splitlines() == ["Hello", ".", "Bye"]  # dot-stuffing undone
    assert parsed["Message-ID"].endswith("@whalli.test>")


async def test_a_subject_with_line_breaks_cannot_add_a_header(plain: FakeSmtpServer) -> None:
    subject = "1 new result for a\r\nBcc: victim@example.com\nX-Evil: 1"
    hostile = EmailMessage(to="ada@example.com", text="x", subject=subject)

    await sender(plain).send(hostile)

    [received] = plain.messages
    parsed = received.parsed()
    assert received.rcpt_to == ["ada@example.com"]
    assert parsed["Bcc"] is None
    assert parsed["X-Evil"] is None
    assert parsed["Subject"] == "1 new result for a Bcc: victim@example.com X-Evil: 1"


async def test_a_recipient_with_a_line_break_is_refused_before_anything_is_sent(
    plain: FakeSmtpServer,
) -> None:
    with pytest.raises(InvalidEmail, match="control characters"):
        await sender(plain).send(
            EmailMessage(to="ada@example.com\r\nRCPT TO:<x@evil.test>", subject="s", text="t")
        )
    assert plain.sessions == 0


async def test_starttls_then_login_then_delivery(ca: trustme.CA) -> None:
    server = FakeSmtpServer(tls=_server_context(ca), credentials=("mailer", "s3cret")).start()
    try:
        await sender(server, "starttls", username="mailer", password="s3cret",
                     ssl_context=_client_context(ca)).send(MESSAGE)  # fmt: skip
    finally:
        server.stop()

    [received] = server.messages
    assert (received.tls, received.user) == (True, "mailer")


async def test_tls_from_the_first_byte_on_the_ssl_port(ca: trustme.CA) -> None:
    server = FakeSmtpServer(tls=_server_context(ca), implicit_tls=True).start()
    try:
        await sender(server, "ssl", ssl_context=_client_context(ca)).send(MESSAGE)
    finally:
        server.stop()

    [received] = server.messages
    assert received.tls


async def test_a_server_without_starttls_is_never_used_in_clear(plain: FakeSmtpServer) -> None:
    with pytest.raises(ServiceUnavailable, match="does not offer STARTTLS"):
        await sender(plain, "starttls").send(MESSAGE)
    assert plain.messages == []


async def test_a_certificate_not_trusted_fails_the_delivery(ca: trustme.CA) -> None:
    server = FakeSmtpServer(tls=_server_context(ca)).start()
    try:
        with pytest.raises(ServiceUnavailable, match="could not be reached"):
            await sender(server, "starttls").send(MESSAGE)  # the system's trust store
    finally:
        server.stop()
    assert server.messages == []


async def test_a_wrong_password_is_unavailable_without_the_password_in_the_error(
    ca: trustme.CA,
) -> None:
    server = FakeSmtpServer(tls=_server_context(ca), credentials=("mailer", "s3cret")).start()
    try:
        with pytest.raises(ServiceUnavailable, match="answered 535") as caught:
            await sender(server, "starttls", username="mailer", password="wrong-pass-123",
                         ssl_context=_client_context(ca)).send(MESSAGE)  # fmt: skip
    finally:
        server.stop()
    assert "wrong-pass-123" not in str(caught.value)


async def test_a_refused_message_or_an_unreachable_server_is_unavailable(
    plain: FakeSmtpServer,
) -> None:
    plain.reject_data = 554
    with pytest.raises(ServiceUnavailable, match="answered 554"):
        await sender(plain).send(MESSAGE)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = SmtpEmailSender(host="127.0.0.1", port=port, sender=SENDER, tls="none", timeout_s=5)
    with pytest.raises(ServiceUnavailable, match="could not be reached"):
        await gone.send(MESSAGE)


class AsciiOnlySmtpServer(FakeSmtpServer):
    """A mail server that does not offer SMTPUTF8 (Amazon SES, many relays)."""

    async def _reply(self, verb: str, arg: str, *rest: Any) -> str:
        said = await super()._reply(verb, arg, *rest)  # type: ignore[arg-type]
        return said.replace("250-SMTPUTF8\r\n", "") if verb == "EHLO" else said


async def test_an_internationalized_domain_goes_in_ascii_to_a_server_without_smtputf8() -> None:
    server = AsciiOnlySmtpServer().start()
    try:
        mailer = SmtpEmailSender(host="127.0.0.1", port=server.port, tls="none", timeout_s=5,
                                 sender="Whalli <alerts@bücher.example>")  # fmt: skip
        await mailer.send(EmailMessage(to="ada@bücher.example", subject="s", text="x"))
        with pytest.raises(ServiceUnavailable, match="does not offer SMTPUTF8"):
            await mailer.send(EmailMessage(to="adä@example.com", subject="s", text="x"))
    finally:
        server.stop()

    [received] = server.messages
    assert received.mail_from == "alerts@xn--bcher-kva.example"
    assert received.rcpt_to == ["ada@xn--bcher-kva.example"]
    assert received.parsed()["To"] == "ada@xn--bcher-kva.example"


async def test_a_sender_is_one_mailbox_and_its_address_the_envelope_sender(
    plain: FakeSmtpServer,
) -> None:
    quoted = '"Whalli, Inc." <alerts@whalli.test>'
    await SmtpEmailSender(host="127.0.0.1", port=plain.port, sender=quoted, tls="none",
                          timeout_s=5).send(MESSAGE)  # fmt: skip

    [received] = plain.messages
    assert received.mail_from == "alerts@whalli.test"
    assert getaddresses([str(received.parsed()["From"])]) == [
        ("Whalli, Inc.", "alerts@whalli.test")
    ]
    for two_or_none in ("Whalli, Inc. <alerts@whalli.test>", "a@x.example, b@x.example", "Whalli"):
        with pytest.raises(InvalidEmail, match="one mailbox"):
            SmtpEmailSender(host="127.0.0.1", sender=two_or_none, tls="none")
