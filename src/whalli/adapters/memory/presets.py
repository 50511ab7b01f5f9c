"""Presets, in memory."""

from __future__ import annotations

from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import PresetNotFound
from whalli.domain.model.presets import Preset
from whalli.ports.presets import PresetRepository

_TABLE = "presets"


class InMemoryPresetRepository(MemoryRepository, PresetRepository):
    async def add(self, preset: Preset) -> None:
        self._tx().insert(_TABLE, preset.id, preset)

    async def get(self, preset_id: UUID) -> Preset:
        preset: Preset = self._tx().get(_TABLE, preset_id, PresetNotFound)
        return preset

    async def get_for_update(self, preset_id: UUID) -> Preset:
        await self._tx().lock(_TABLE, preset_id)
        return await self.get(preset_id)

    async def list_for_user(self, user_id: UUID) -> list[Preset]:
        found: list[Preset] = self._tx().select(_TABLE, lambda p: p.user_id == user_id)
        return sorted(found, key=lambda p: (p.created_at, p.id))

    async def count_for_user(self, user_id: UUID) -> int:
        return len(await self.list_for_user(user_id))

    async def update(self, preset: Preset) -> None:
        self._tx().replace(_TABLE, preset.id, preset, PresetNotFound)

    async def delete(self, preset_id: UUID) -> None:
        self._tx().delete(_TABLE, preset_id, PresetNotFound)
