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

    async def get_for_update(self, preset_id: UUID) -> Preset:
        """Like ``get``, and lock the preset until the unit of work ends: a second unit of
        work calling it waits, then reads the preset as committed, so that two changes of one
        preset run one after the other. Raises ``PresetNotFound``."""
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
