"""Use case: read one recurring search."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.searches import SearchSubscription
from whalli.domain.services.searches.access import require_subscription
from whalli.ports.unit_of_work import UnitOfWork


class GetSearch(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    subscription_id: UUID


class GetSearchHandler:
    """A subscription, for any member of its project (anyone else:
    ``SearchSubscriptionNotFound``)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: GetSearch) -> SearchSubscription:
        async with self._uow as uow:
            return await require_subscription(uow, command.subscription_id, command.user_id, "read")
