"""Changing a preset whose model has since left the catalog: a rename reads no model, a change
of its parameters still checks them against it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import InvalidInput, ModelNotFound
from whalli.domain.model.presets import Preset
from whalli.domain.model.users import Plan, User
from whalli.domain.services.presets.update_preset import UpdatePreset, UpdatePresetHandler

KEPT = ModelSpec(
    id="openai/kept", provider="openai", upstream="kept", min_plan=Plan.FREE,
    input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, context_window=8_000,
    max_output_tokens=1_500,
)  # fmt: skip
CATALOG = ModelCatalog([KEPT])  # "openai/gone" was listed when the presets were saved
ENABLED = {"openai"}


async def _preset(store: MemoryStore, clock: ManualClock, model: str) -> Preset:
    user = User.create(id=uuid.uuid4(), email=f"{uuid.uuid4().hex}@example.com", name="Ada",
                       now=clock.now())  # fmt: skip
    preset = Preset.create(
        id=uuid.uuid4(), user_id=user.id, name="long answers", model=model, now=clock.now(),
        params=GenerationParams(max_tokens=1_000),
    )  # fmt: skip
    async with InMemoryUnitOfWork(store) as uow:
        await uow.users.add(user)
        await uow.presets.add(preset)
        await uow.commit()
    return preset


async def _update(store: MemoryStore, clock: ManualClock, preset: Preset, **change: Any) -> Preset:
    handler = UpdatePresetHandler(InMemoryUnitOfWork(store), CATALOG, ENABLED, clock)
    command = UpdatePreset(user_id=preset.user_id, preset_id=preset.id, **change)
    return await handler.execute(command)


async def test_a_preset_whose_model_left_the_catalog_is_renamed_and_keeps_its_model() -> None:
    store, clock = MemoryStore(), ManualClock()
    preset = await _preset(store, clock, "openai/gone")

    renamed = await _update(store, clock, preset, name=" old model ", system_prompt="be brief")

    assert (renamed.name, renamed.model, renamed.system_prompt) == (
        "old model", "openai/gone", "be brief",
    )  # fmt: skip
    async with InMemoryUnitOfWork(store) as uow:
        stored = await uow.presets.get(preset.id)
    assert (stored.name, stored.params.max_tokens) == ("old model", 1_000)


async def test_new_parameters_are_still_checked_against_the_kept_model() -> None:
    store, clock = MemoryStore(), ManualClock()
    gone = await _preset(store, clock, "openai/gone")
    kept = await _preset(store, clock, "openai/kept")

    with pytest.raises(ModelNotFound, match="openai/gone"):
        await _update(store, clock, gone, params=GenerationParams(max_tokens=500))
    with pytest.raises(InvalidInput, match="at most 1,500 tokens") as caught:
        await _update(store, clock, kept, params=GenerationParams(max_tokens=2_000))
    assert caught.value.details["field"] == "params.maxTokens"
