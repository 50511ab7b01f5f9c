"""Presets in Postgres."""

from __future__ import annotations

from typing import Any, LiteralString
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    PostgresRepository,
    Row,
    assignments,
    columns,
    placeholders,
)
from whalli.domain.model.errors import PresetNotFound
from whalli.domain.model.presets import Preset
from whalli.ports.presets import PresetRepository

_COLUMNS = tuple(Preset.__struct_fields__)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM presets"
# the sampling parameters are a jsonb object
_INSERT = (f"INSERT INTO presets ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})").replace(
    "%(params)s", "%(params)s::jsonb"
)
_UPDATE = (f"UPDATE presets SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s").replace(
    "%(params)s", "%(params)s::jsonb"
)


def _params(preset: Preset) -> dict[str, Any]:
    params = msgspec.structs.asdict(preset)
    params["params"] = msgspec.json.encode(preset.params).decode()
    return params


def _preset(row: Row) -> Preset:
    return msgspec.convert(row, Preset)


class PostgresPresetRepository(PostgresRepository, PresetRepository):
    async def add(self, preset: Preset) -> None:
        await self._run(_INSERT, _params(preset))

    async def get(self, preset_id: UUID) -> Preset:
        return await self._get(f"{_SELECT} WHERE id = %(id)s", preset_id)

    async def get_for_update(self, preset_id: UUID) -> Preset:
        # NO KEY UPDATE: the lock the UPDATE that follows takes anyway
        return await self._get(f"{_SELECT} WHERE id = %(id)s FOR NO KEY UPDATE", preset_id)

    async def _get(self, query: LiteralString, preset_id: UUID) -> Preset:
        row = await self._one(query, {"id": preset_id})
        if row is None:
            raise PresetNotFound()
        return _preset(row)

    async def list_for_user(self, user_id: UUID) -> list[Preset]:
        query = f"{_SELECT} WHERE user_id = %(user_id)s ORDER BY created_at, id"
        return [_preset(row) for row in await self._all(query, {"user_id": user_id})]

    async def count_for_user(self, user_id: UUID) -> int:
        query = "SELECT count(*) AS n FROM presets WHERE user_id = %(user_id)s"
        row = await self._one(query, {"user_id": user_id})
        return 0 if row is None else int(row["n"])

    async def update(self, preset: Preset) -> None:
        if await self._run(_UPDATE, _params(preset)) == 0:
            raise PresetNotFound()

    async def delete(self, preset_id: UUID) -> None:
        if await self._run("DELETE FROM presets WHERE id = %(id)s", {"id": preset_id}) == 0:
            raise PresetNotFound()
