"""An email sender that keeps messages in an outbox."""

from __future__ import annotations

from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.email_sender import EmailMessage, EmailSender


class InMemoryEmailSender(EmailSender):
    """Appends sent messages to ``outbox``; set ``unavailable`` to fail like a down mail server."""

    def __init__(self) -> None:
        self.outbox: list[EmailMessage] = []
        self.unavailable = False

    async def send(self, message: EmailMessage) -> None:
        if self.unavailable:
            raise ServiceUnavailable("The mail server is unavailable.")
        self.outbox.append(message)
