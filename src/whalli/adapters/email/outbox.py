"""Email written to a folder instead of sent: one ``.eml`` file a message (RFC 5322, as the SMTP
sender would have sent it), for development (``whalli dev`` without a mail server), where the
reset and verification links and the search emails can then be opened with any mail reader.

A message is written to a temporary name and renamed, so a reader never sees half of one; the
folder and its files are readable by their owner only (a reset link is a credential).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from whalli.adapters.email.smtp import SmtpEmailSender
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.email_sender import EmailMessage, EmailSender


class OutboxEmailSender(EmailSender):
    """Raises ``ServiceUnavailable`` when the folder cannot be written."""

    def __init__(self, folder: str, *, sender: str) -> None:
        self._folder = Path(folder)
        # builds the message exactly as it would be sent (headers cleaned, addresses encoded)
        self._composer = SmtpEmailSender(host="localhost", sender=sender, tls="none")

    async def send(self, message: EmailMessage) -> None:
        data = self._composer.compose(message).as_bytes()
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"{os.urandom(8).hex()}"
            partial = self._folder / f".{name}.partial"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            # named by the time written: sorted by name, the files are in the order sent
            partial.rename(self._folder / f"{time.time_ns()}-{name}.eml")
        except OSError as e:
            raise ServiceUnavailable(f"The email outbox could not be written: {e.strerror}") from e
