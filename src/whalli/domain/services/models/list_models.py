"""Use case: the models a user may pick."""

from __future__ import annotations

from collections.abc import Set

import msgspec

from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.users import Plan


class ListModels(msgspec.Struct, frozen=True, kw_only=True):
    plan: Plan


class ListModelsHandler:
    """The catalog's models the plan includes, in catalog order.

    Rules:
    - a plan includes the models of the plans below it (``free`` < ``pro`` < ``enterprise``);
    - a model whose provider is not configured (no API key) is not offered to anyone.
    """

    def __init__(self, catalog: ModelCatalog, enabled_providers: Set[str]) -> None:
        self._catalog = catalog
        self._enabled = frozenset(enabled_providers)

    async def execute(self, command: ListModels) -> list[ModelSpec]:
        return self._catalog.available_for(command.plan, self._enabled)
