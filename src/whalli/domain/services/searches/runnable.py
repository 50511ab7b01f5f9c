"""Whether a recurring search should run now: the rule its job and its failures share."""

from __future__ import annotations

import logging
from uuid import UUID

from whalli.domain.model.errors import NotFound, PermissionDenied
from whalli.domain.model.searches import SearchSubscription
from whalli.domain.services.projects.access import require_role
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


async def runnable(
    uow: UnitOfWork, subscription_id: UUID, *, lock: bool = False
) -> SearchSubscription | None:
    """The subscription if it should run now, else None (logged): not when it is gone
    (deleted, or with its user or project), paused, its user disabled or no longer a member of
    its project. Call inside ``async with uow:``; with ``lock``, its row is held until the unit
    of work ends."""
    searches = uow.searches
    try:
        subscription = await (searches.get_for_update if lock else searches.get)(subscription_id)
        if not subscription.active:
            return None
        user = await uow.users.get(subscription.user_id)
        if user.disabled:
            return None
        await require_role(uow, subscription.project_id, subscription.user_id, "read")
    except (NotFound, PermissionDenied):
        log.info("Search %s not run: it, its user or its project is gone.", subscription_id)
        return None
    return subscription
