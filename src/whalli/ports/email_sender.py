"""Outgoing email."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.base import Value


class EmailMessage(Value, frozen=True, kw_only=True):
    to: str
    subject: str
    text: str
    html: str | None = None


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server. Raises ``ServiceUnavailable`` on failure."""
        ...
