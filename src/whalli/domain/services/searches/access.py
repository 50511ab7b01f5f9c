"""The access rule of search use cases: a subscription is as visible as its project.

A caller who may not read a subscription's project is told ``SearchSubscriptionNotFound``,
exactly as for an id that does not exist, so that ids cannot be probed; a member whose role does
not grant the action is told ``PermissionDenied`` (see ``domain.services.projects.access``), and
so is an owner or editor asking more than to stop a subscription another member made
(``require_to_change``).
"""

from __future__ import annotations

from uuid import UUID

from whalli.domain.model.errors import (
    InvalidInput,
    PermissionDenied,
    ProjectNotFound,
    SearchSubscriptionNotFound,
)
from whalli.domain.model.searches import SearchSubscription
from whalli.domain.services.chats.cursor import Position, decode_cursor, encode_cursor
from whalli.domain.services.projects.access import Need, require_role
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
NOT_YOURS = (
    "Only the member who made this search may change its query or interval, or turn its runs "
    "or emails on: it notifies them alone. You may stop it: pause it, turn its emails off, "
    "or delete it."
)


async def require_subscription(
    uow: UnitOfWork, subscription_id: UUID, user_id: UUID, need: Need, *, lock: bool = False
) -> SearchSubscription:
    """The subscription, if the caller's role in its project grants ``need``; call inside
    ``async with uow:``; with ``lock``, its row held until the unit of work ends. Raises
    ``SearchSubscriptionNotFound`` (missing, or not a member) and ``PermissionDenied``."""
    searches = uow.searches
    subscription = await (searches.get_for_update if lock else searches.get)(subscription_id)
    try:
        await require_role(uow, subscription.project_id, user_id, need)
    except ProjectNotFound:
        raise SearchSubscriptionNotFound() from None
    return subscription


async def require_to_change(
    uow: UnitOfWork, subscription_id: UUID, user_id: UUID, *, stopping: bool, lock: bool = False
) -> SearchSubscription:
    """The subscription, if the caller may make this change. A subscription notifies its
    creator alone (in-app, and by email with ``notify_email``), so only they choose what it
    sends them:

    - its creator may change anything while their role lets them write in its project, and,
      whatever their role (a viewer too, say an editor made viewer), may always stop it
      (``stopping``: pause it, turn its emails off, delete it), so that nobody gets runs or
      emails they cannot stop;
    - other owners and editors may only stop it (moderation): a change of its query or
      interval, or turning its runs or emails (back) on, is ``PermissionDenied``, so that
      nobody can make it send its creator what they never asked for;
    - other viewers may change nothing (``PermissionDenied``), anyone else is told
      ``SearchSubscriptionNotFound`` (as for a missing id)."""
    subscription = await require_subscription(uow, subscription_id, user_id, "read", lock=lock)
    own = subscription.user_id == user_id
    if own and stopping:
        return subscription
    await require_role(uow, subscription.project_id, user_id, "write")
    if not (own or stopping):
        raise PermissionDenied(NOT_YOURS)
    return subscription


def page_start(limit: int, cursor: str | None) -> Position | None:
    """Check a page's ``limit`` (1 to ``MAX_PAGE_SIZE``) and decode its cursor; both
    ``InvalidInput`` when wrong."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}.", field="limit")
    return None if cursor is None else decode_cursor(cursor)


def next_cursor(found: int, limit: int, last: Position) -> str | None:
    """The cursor after a page read with ``limit + 1`` rows (``found`` of them): None when no
    other page follows."""
    return encode_cursor(last) if found > limit else None
