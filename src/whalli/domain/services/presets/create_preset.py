"""Use case: save a preset."""

from __future__ import annotations

from collections.abc import Set
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import ModelCatalog, check_max_tokens, check_reasoning
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import PresetLimitReached
from whalli.domain.model.presets import MAX_PRESETS, Preset
from whalli.domain.services.presets.rules import usable_model
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork


class CreatePreset(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    name: str
    model: str
    system_prompt: str | None = None
    params: GenerationParams = GenerationParams()


class CreatePresetHandler:
    """Save a preset of the caller's.

    Rules:
    - the model must be one the caller may start chats with now (``rules.usable_model``);
    - name, system prompt and parameters as ``domain.model.presets`` says;
    - at most ``MAX_PRESETS`` per user (``PresetLimitReached``); the account is locked while
      they are counted, so saves at the same moment cannot all take the last place.
    """

    def __init__(
        self, uow: UnitOfWork, catalog: ModelCatalog, enabled_providers: Set[str], clock: Clock,
        ids: IdGenerator,
    ) -> None:  # fmt: skip
        self._uow, self._catalog, self._enabled = uow, catalog, frozenset(enabled_providers)
        self._clock, self._ids = clock, ids

    async def execute(self, command: CreatePreset) -> Preset:
        preset = Preset.create(
            id=self._ids.new_id(), user_id=command.user_id, name=command.name,
            model=command.model, system_prompt=command.system_prompt, params=command.params,
            now=self._clock.now(),
        )  # fmt: skip
        async with self._uow as uow:
            user = await uow.users.get_for_update(command.user_id)  # (the count's lock)
            spec = usable_model(self._catalog, self._enabled, user, command.model)
            check_reasoning(spec, preset.params.reasoning_effort, field="params.reasoningEffort")
            check_max_tokens(spec, preset.params.max_tokens, field="params.maxTokens")
            if await uow.presets.count_for_user(command.user_id) >= MAX_PRESETS:
                raise PresetLimitReached(
                    f"A user has at most {MAX_PRESETS} presets; delete one first.",
                    limit=MAX_PRESETS,
                )
            await uow.presets.add(preset)
            await uow.commit()
        return preset
