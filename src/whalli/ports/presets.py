"""Storage of users' presets."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from whalli.domain.model.presets import Preset


class PresetRepository(Protocol):
    async def add(self, preset: Preset) -> None: ...

    async def get(self, preset_id: UUID) -> Preset:
        """Raises ``PresetNotFound``."""
        ...

    async def list_for_user(self, user_id: UUID) -> list[Preset]:
        """Oldest first (the order they were made in)."""
        ...

    async def count_for_user(self, user_id: UUID) -> int: ...

    async def update(self, preset: Preset) -> None:
        """Raises ``PresetNotFound``."""
        ...

    async def delete(self, preset_id: UUID) -> None:
        """Raises ``PresetNotFound``."""
        ...
