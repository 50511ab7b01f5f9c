"""Use case: list the caller's presets."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.presets import Preset
from whalli.ports.unit_of_work import UnitOfWork


class ListPresets(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID


class ListPresetsHandler:
    """The caller's presets, oldest first; nobody else's (there is no sharing of presets)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListPresets) -> list[Preset]:
        async with self._uow.read_only() as uow:
            return await uow.presets.list_for_user(command.user_id)
