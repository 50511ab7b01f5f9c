"""Several password screens asked in order, as one."""

from __future__ import annotations

from collections.abc import Sequence

from whalli.domain.model.passwords import PasswordExposure
from whalli.ports.password_screen import PasswordScreen


class PasswordScreenChain(PasswordScreen):
    """The first screen's finding wins: list the cheap offline screens first, so a common
    password is refused without a network call and a remote screen is asked only about the
    passwords that pass them."""

    def __init__(self, screens: Sequence[PasswordScreen]) -> None:
        self._screens = tuple(screens)

    async def screen(self, password: str) -> PasswordExposure | None:
        for screen in self._screens:
            found = await screen.screen(password)
            if found is not None:
                return found
        return None
