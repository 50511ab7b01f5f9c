"""The rules every preset use case shares: whose a preset is, and which models it may name."""

from __future__ import annotations

from collections.abc import Set
from uuid import UUID

from whalli.domain.model.catalog import ModelCatalog, ModelSpec, ensure_model_allowed
from whalli.domain.model.errors import ModelNotFound, PresetNotFound
from whalli.domain.model.presets import Preset
from whalli.domain.model.users import User
from whalli.ports.unit_of_work import UnitOfWork


async def require_preset(
    uow: UnitOfWork, preset_id: UUID, user_id: UUID, *, lock: bool = False
) -> Preset:
    """The caller's own preset; anyone else's answers ``PresetNotFound``, as a missing one.
    With ``lock``, its row is held until the unit of work ends."""
    preset = await (uow.presets.get_for_update if lock else uow.presets.get)(preset_id)
    if preset.user_id != user_id:
        raise PresetNotFound()
    return preset


def usable_model(
    catalog: ModelCatalog, enabled_providers: Set[str], user: User, model_id: str
) -> ModelSpec:
    """The model, if it is in the catalog with its provider configured (else ``ModelNotFound``)
    and the caller may use it (``ensure_model_allowed``: ``AccountDisabled``,
    ``ModelNotInPlan``): the start's rules, so a preset never names a model its start refuses."""
    spec = catalog.get(model_id)
    if spec.provider not in enabled_providers:
        raise ModelNotFound(f"The model {model_id} is not available.")
    ensure_model_allowed(user, spec)
    return spec
