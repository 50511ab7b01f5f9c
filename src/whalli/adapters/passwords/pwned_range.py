"""Have I Been Pwned's Pwned Passwords, through its k-anonymity range API.

``GET {base_url}/range/{first 5 hex digits of the SHA-1, upper case}`` answers one line per
breached password whose hash starts with that prefix: ``{the other 35 hex digits}:{count}``.
Only the 5-digit prefix leaves the process, never the password or its full hash. With the
``Add-Padding: true`` header the answer is padded with random suffixes of count 0 so its size
does not give the prefix away; those lines are not breaches and are ignored.

The service is a nice-to-have: when it fails, answers slowly or sends something unreadable,
the password counts as not breached (fail open, with a warning that carries the error's type
or status, never the password, its hash or the prefix) and sign-up goes on; the offline list
of common passwords still applies.
"""

from __future__ import annotations

import hashlib

import httpx
import structlog

from whalli.domain.model.passwords import PasswordExposure
from whalli.ports.password_screen import PasswordScreen

DEFAULT_TIMEOUT_S = 2.0

log = structlog.get_logger("whalli.password_screen")


class PwnedPasswordsScreen(PasswordScreen):
    """``BREACHED`` for a password the range API lists with a count of at least 1."""

    def __init__(
        self, client: httpx.AsyncClient, *, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    async def screen(self, password: str) -> PasswordExposure | None:
        digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
        prefix, suffix = digest[:5], digest[5:]
        try:
            response = await self._client.get(
                f"{self._base_url}/range/{prefix}",
                headers={"Add-Padding": "true"},
                timeout=self._timeout_s,
            )
        except httpx.HTTPError as e:
            # The type only: httpx messages can carry the URL, and the URL carries the prefix.
            log.warning("pwned_passwords_unavailable", reason=type(e).__name__)
            return None
        if response.status_code != 200:
            log.warning("pwned_passwords_unavailable", reason=f"HTTP {response.status_code}")
            return None
        return PasswordExposure.BREACHED if _listed(response.text, suffix) else None


def _listed(body: str, suffix: str) -> bool:
    for line in body.splitlines():
        found, _, count = line.strip().partition(":")
        if found.upper() == suffix:
            return count.strip().isdigit() and int(count) > 0
    return False
