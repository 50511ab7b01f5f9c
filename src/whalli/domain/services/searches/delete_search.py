"""Use case: delete a recurring search and its results."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.services.searches.access import require_to_change
from whalli.ports.unit_of_work import UnitOfWork


class DeleteSearch(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    subscription_id: UUID


class DeleteSearchHandler:
    """Delete a subscription with its results (the schema cascades them). Deleting stops it,
    so its own creator may with any role, and owners and editors of its project may delete
    another member's (moderation; ``require_to_change``); a viewer deleting another's:
    ``PermissionDenied``, anyone else ``SearchSubscriptionNotFound``. Notifications already
    sent stay (their link then 404s); a run already queued finds it gone and does nothing."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: DeleteSearch) -> None:
        async with self._uow as uow:
            subscription = await require_to_change(
                uow, command.subscription_id, command.user_id, stopping=True
            )
            await uow.searches.delete(subscription.id)
            await uow.commit()
