"""A password screen over passwords given in full, for tests."""

from __future__ import annotations

from collections.abc import Iterable

from whalli.domain.model.passwords import PasswordExposure, normalize_password
from whalli.ports.password_screen import PasswordScreen


class ListedPasswordScreen(PasswordScreen):
    """``COMMON`` or ``BREACHED`` for the passwords listed as such (compared in NFC, case and
    all), ``None`` for every other. ``screened`` counts the calls."""

    def __init__(self, *, common: Iterable[str] = (), breached: Iterable[str] = ()) -> None:
        self._found = {normalize_password(p): PasswordExposure.BREACHED for p in breached}
        self._found.update({normalize_password(p): PasswordExposure.COMMON for p in common})
        self.screened = 0

    async def screen(self, password: str) -> PasswordExposure | None:
        self.screened += 1
        return self._found.get(normalize_password(password))
