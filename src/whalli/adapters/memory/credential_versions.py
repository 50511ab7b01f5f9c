"""In-process ``CredentialVersions``: a token per user, replaced on every bump."""

from __future__ import annotations

import asyncio
import secrets
from uuid import UUID

from whalli.ports.credential_versions import CredentialVersions


class InMemoryCredentialVersions(CredentialVersions):
    def __init__(self) -> None:
        self._versions: dict[UUID, bytes] = {}

    def current(self, user_id: UUID) -> asyncio.Future[bytes | None]:
        answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        # as Redis's: a user without a version is given one by the read
        answer.set_result(self._versions.setdefault(user_id, secrets.token_hex(8).encode()))
        return answer

    async def bump(self, user_id: UUID) -> None:
        self._versions[user_id] = secrets.token_hex(8).encode()
