"""Knowing whether a password is already in attackers' lists (common or breached passwords)."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.passwords import PasswordExposure


class PasswordScreen(Protocol):
    """Looks a candidate new password up in lists of passwords known to attackers."""

    async def screen(self, password: str) -> PasswordExposure | None:
        """Why ``password`` (already NFC-normalized by ``validate_password``) is known to
        attackers, or ``None`` when this screen knows nothing against it.

        Never raises and never blocks for long: a screen that cannot answer (a remote service
        down or slow) answers ``None`` and logs a warning, so sign-up keeps working. Neither the
        password nor anything derived from it (a hash or a hash prefix) is ever logged.
        """
        ...
