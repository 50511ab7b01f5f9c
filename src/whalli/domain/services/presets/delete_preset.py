"""Use case: delete a preset."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.services.presets.rules import require_preset
from whalli.ports.unit_of_work import UnitOfWork


class DeletePreset(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    preset_id: UUID


class DeletePresetHandler:
    """Delete the caller's preset (anyone else's: ``PresetNotFound``); chats started with it
    keep what it gave them."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: DeletePreset) -> None:
        async with self._uow as uow:
            preset = await require_preset(uow, command.preset_id, command.user_id)
            await uow.presets.delete(preset.id)
            await uow.commit()
