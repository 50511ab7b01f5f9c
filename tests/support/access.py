"""Telling the app's processes that a test changed an account straight through a repository."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.resolve import resolved


async def changed(container: Any, user_id: uuid.UUID | str) -> None:
    """What every production change to an account does once committed (``AccessChanges``): a
    test that writes one through a repository calls this, so that the app's next request
    sees it rather than what it remembers of the account's credentials."""
    access = await resolved(container.services.access_changes())
    await access.changed(uuid.UUID(str(user_id)))
