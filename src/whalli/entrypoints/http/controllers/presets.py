"""Presets: /api/presets (the caller's own saved model, instructions and parameters, to start
chats with by ``presetId``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from whalli.domain.model import presets as model
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.principal import Principal
from whalli.domain.services.presets.create_preset import CreatePreset, CreatePresetHandler
from whalli.domain.services.presets.delete_preset import DeletePreset, DeletePresetHandler
from whalli.domain.services.presets.list_presets import ListPresets, ListPresetsHandler
from whalli.domain.services.presets.update_preset import UpdatePreset, UpdatePresetHandler
from whalli.entrypoints.http.params_body import ParamsBody, generation_params
from whalli.entrypoints.http.schemas import Inbound, Schema

Model = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ParamsOut(Schema):
    # only the parameters the preset sets (unset ones are left out)
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None


class Preset(Schema):
    id: UUID
    name: str
    model: str
    system_prompt: str | None  # no default: always present, null when it has none
    params: ParamsOut
    created_at: datetime
    updated_at: datetime


class PresetCreate(Inbound):
    name: str
    model: Model
    system_prompt: str | None = None
    params: ParamsBody | None = None


class PresetUpdate(Inbound, omit_defaults=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    model: Model | msgspec.UnsetType = msgspec.UNSET
    system_prompt: str | msgspec.UnsetType | None = msgspec.UNSET  # null (or blank) removes it
    params: ParamsBody | msgspec.UnsetType | None = msgspec.UNSET  # replaced whole; null clears


def _preset(preset: model.Preset) -> Preset:
    params = msgspec.convert(preset.params, ParamsOut, from_attributes=True)
    return Preset(
        id=preset.id, name=preset.name, model=preset.model, system_prompt=preset.system_prompt,
        params=params, created_at=preset.created_at, updated_at=preset.updated_at,
    )  # fmt: skip


def _given(params: ParamsBody | msgspec.UnsetType | None) -> GenerationParams | msgspec.UnsetType:
    return params if isinstance(params, msgspec.UnsetType) else generation_params(params)


class PresetController(Controller):
    """Each user's own presets: nobody else sees, uses or changes them (404 as for a missing
    one). Start a chat with one by `POST /api/chat/start {"presetId": …, "message": …}`."""

    path = "/api/presets"
    tags = ["presets"]

    @post(
        "/",
        summary="Save a preset: a model with a system prompt and sampling parameters",
        description="The model must be one the caller may use now (404 unknown, 403 above "
        "the plan). A start with `presetId` takes the preset's model and the parameters it "
        "leaves unset, and a new chat started without `systemPrompt` gets the preset's (over "
        "custom instructions). At most 100 presets a user (422 beyond).",
    )
    async def create(
        self,
        principal: NamedDependency[Principal],
        create_preset: NamedDependency[CreatePresetHandler],
        data: JSONBody[PresetCreate],
    ) -> Preset:
        command = CreatePreset(
            user_id=principal.user_id, name=data.name, model=data.model,
            system_prompt=data.system_prompt, params=generation_params(data.params),
        )  # fmt: skip
        return _preset(await create_preset.execute(command))

    @get("/", summary="The caller's presets, oldest first")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_presets: NamedDependency[ListPresetsHandler],
    ) -> list[Preset]:
        found = await list_presets.execute(ListPresets(user_id=principal.user_id))
        return [_preset(p) for p in found]

    @patch(
        "/{preset_id:uuid}",
        summary="Change a preset",
        description="Fields left out stay; `params` is replaced whole (`null`: none); a model "
        "changed to must be usable now. Chats started with it before do not change.",
    )
    async def update(
        self,
        principal: NamedDependency[Principal],
        update_preset: NamedDependency[UpdatePresetHandler],
        preset_id: FromPath[UUID],
        data: JSONBody[PresetUpdate],
    ) -> Preset:
        command = UpdatePreset(
            user_id=principal.user_id, preset_id=preset_id, name=data.name, model=data.model,
            system_prompt=data.system_prompt, params=_given(data.params),
        )  # fmt: skip
        return _preset(await update_preset.execute(command))

    @delete("/{preset_id:uuid}", summary="Delete a preset")
    async def remove(
        self,
        principal: NamedDependency[Principal],
        delete_preset: NamedDependency[DeletePresetHandler],
        preset_id: FromPath[UUID],
    ) -> None:
        await delete_preset.execute(DeletePreset(user_id=principal.user_id, preset_id=preset_id))
