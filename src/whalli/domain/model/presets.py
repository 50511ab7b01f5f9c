"""Presets: a user's saved way to start chats, a model with its instructions and sampling
parameters, picked by id instead of sent each time (LibreChat's presets, Open WebUI's models).

Rules:
- a preset belongs to one user, who alone sees and uses it; at most ``MAX_PRESETS`` each;
- its name is 1 to ``PRESET_NAME_MAX`` characters, spaces folded (not unique: a user may keep
  two of one name); its model is a catalog id, checked when the preset is saved and again when
  it is used (a provider may have been turned off, or the user's plan changed since);
- its system prompt follows a chat's rules (``clean_system_prompt``: blank is none), and its
  parameters ``GenerationParams``'s.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.base import Entity
from whalli.domain.model.chats import GenerationParams, clean_name, clean_system_prompt
from whalli.domain.model.errors import InvalidInput

MAX_PRESETS = 100
PRESET_NAME_MAX = 80


def preset_name(name: str) -> str:
    return clean_name(name, limit=PRESET_NAME_MAX, field="name", what="A preset's name")


def storable_params(params: GenerationParams) -> GenerationParams:
    """A preset's parameters, which are stored as JSON: a stop sequence holding NUL (which a
    start passes on, but JSON in Postgres cannot hold) is refused, naming the field."""
    if params.stop is not None and any("\x00" in stop for stop in params.stop):
        raise InvalidInput(
            "A preset's stop sequences may not contain the NUL character.", field="params.stop"
        )
    return params


class Preset(Entity, kw_only=True):
    id: UUID
    user_id: UUID
    name: str
    model: str  # a catalog id
    system_prompt: str | None = None
    params: GenerationParams = GenerationParams()
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls, *, id: UUID, user_id: UUID, name: str, model: str, now: datetime,
        system_prompt: str | None = None, params: GenerationParams = GenerationParams(),
    ) -> Preset:  # fmt: skip
        return cls(
            id=id, user_id=user_id, name=preset_name(name), model=model,
            system_prompt=clean_system_prompt(system_prompt), params=storable_params(params),
            created_at=now,
            updated_at=now,
        )  # fmt: skip


def applied(
    preset: Preset, *, model: str | None, params: GenerationParams, system_prompt: str | None,
    new_chat: bool, cleared: frozenset[str] = frozenset(),
) -> tuple[str, GenerationParams, str | None]:  # fmt: skip
    """A start's model, parameters and system prompt with ``preset`` filling in what it leaves
    out: the preset's model unless the start names one; each parameter the start leaves unset
    (``None``) from the preset, but those it ``cleared`` on purpose; for a new chat started
    without a system prompt, the preset's (over the caller's custom instructions, which still
    apply when the preset has none). An existing chat keeps its own system prompt."""
    merged = params.filled_from(preset.params, but=cleared)
    if new_chat and system_prompt is None:
        system_prompt = preset.system_prompt
    return model or preset.model, merged, system_prompt
