"""The development outbox: each email a whole ``.eml`` file, as SMTP would have sent it."""

from __future__ import annotations

import stat
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from whalli.adapters.email.outbox import OutboxEmailSender
from whalli.config import load_settings
from whalli.container import build_email_sender
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.email_sender import EmailMessage


async def test_each_message_is_one_private_eml_file_in_the_order_sent(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    sender = OutboxEmailSender(str(folder), sender="Whalli <whalli@localhost>")

    await sender.send(
        EmailMessage(to="ada@bücher.example", subject="First\r\nBcc: x@evil", text="1")
    )
    await sender.send(EmailMessage(to="bob@example.com", subject="Second", text="two\n.\nlines"))

    files = sorted(folder.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no partial file left
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    first, second = (message_from_bytes(f.read_bytes(), policy=policy.default) for f in files)
    assert first["To"] == "ada@xn--bcher-kva.example"
    assert first["Bcc"] is None  # the subject's line break added no header
    assert first["From"] == "Whalli <whalli@localhost>"
    assert second["Subject"] == "Second"
    assert second.get_content().replace("\r\n", "\n").rstrip("\n") == "two\n.\nlines"


async def test_an_unwritable_outbox_is_service_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sender = OutboxEmailSender(str(blocker / "outbox"), sender="whalli@localhost")

    with pytest.raises(ServiceUnavailable, match="outbox could not be written"):
        await sender.send(EmailMessage(to="ada@example.com", subject="s", text="t"))


def test_the_outbox_is_used_only_without_an_smtp_host(tmp_path: Path) -> None:
    outbox = {"WHALLI_EMAIL_OUTBOX_DIR": str(tmp_path)}
    smtp = {"WHALLI_SMTP_HOST": "mail.example", "WHALLI_SMTP_FROM": "a@example.com"}

    assert isinstance(build_email_sender(load_settings(outbox, dotenv=None)), OutboxEmailSender)
    chosen = build_email_sender(load_settings({**outbox, **smtp}, dotenv=None))
    assert not isinstance(chosen, OutboxEmailSender)
    assert build_email_sender(load_settings({}, dotenv=None)) is None
    assert load_settings(outbox, dotenv=None).sends_email is True
    assert load_settings({}, dotenv=None).sends_email is False
