"""Use case: change a preset."""

from __future__ import annotations

from collections.abc import Set
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import ModelCatalog, check_max_tokens, check_reasoning
from whalli.domain.model.chats import GenerationParams, clean_system_prompt
from whalli.domain.model.presets import Preset, preset_name, storable_params
from whalli.domain.services.presets.rules import require_preset, usable_model
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class UpdatePreset(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    preset_id: UUID
    # UNSET: unchanged
    name: str | msgspec.UnsetType = msgspec.UNSET
    model: str | msgspec.UnsetType = msgspec.UNSET
    system_prompt: str | msgspec.UnsetType | None = msgspec.UNSET  # None (or blank): none
    params: GenerationParams | msgspec.UnsetType = msgspec.UNSET  # replaced whole


class UpdatePresetHandler:
    """Change the caller's preset (anyone else's: ``PresetNotFound``); a model it is changed to
    must be usable now (``rules.usable_model``), one it keeps is not checked again here (its
    use is). A change of model or parameters checks that the model takes the reasoning effort
    and token cap the preset then has; a change of name or system prompt alone reads no model,
    so a preset whose model has left the catalog can still be renamed or tidied. Chats started
    with it before are not changed. The preset is locked for the change: two changes at once
    both stay."""

    def __init__(
        self, uow: UnitOfWork, catalog: ModelCatalog, enabled_providers: Set[str], clock: Clock
    ) -> None:
        self._uow, self._catalog, self._enabled = uow, catalog, frozenset(enabled_providers)
        self._clock = clock

    async def execute(self, command: UpdatePreset) -> Preset:
        async with self._uow as uow:
            # locked: two changes at once (a new name and a new system prompt, from two tabs)
            # run one after the other, each writing on what the other wrote
            preset = await require_preset(uow, command.preset_id, command.user_id, lock=True)
            if not isinstance(command.name, msgspec.UnsetType):
                preset.name = preset_name(command.name)
            if not isinstance(command.model, msgspec.UnsetType):
                user = await uow.users.get(command.user_id)
                usable_model(self._catalog, self._enabled, user, command.model)
                preset.model = command.model
            if not isinstance(command.system_prompt, msgspec.UnsetType):
                preset.system_prompt = clean_system_prompt(command.system_prompt)
            if not isinstance(command.params, msgspec.UnsetType):
                preset.params = storable_params(command.params)
            params = preset.params
            changes_generation = not (
                isinstance(command.model, msgspec.UnsetType)
                and isinstance(command.params, msgspec.UnsetType)
            )
            if changes_generation and (
                params.reasoning_effort is not None or params.max_tokens is not None
            ):
                spec = self._catalog.get(preset.model)  # still a model that takes them
                check_reasoning(spec, params.reasoning_effort, field="params.reasoningEffort")
                check_max_tokens(spec, params.max_tokens, field="params.maxTokens")
            preset.updated_at = self._clock.now()
            await uow.presets.update(preset)
            await uow.commit()
        return preset
