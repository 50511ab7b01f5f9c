"""Use case: subscribe to a recurring web search."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import SearchesNotConfigured, SearchLimitReached
from whalli.domain.model.searches import MAX_ACTIVE_SUBSCRIPTIONS, SearchSubscription
from whalli.domain.services.projects.access import project_to_write
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork


class CreateSearch(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID | None  # None: the caller's personal project
    query: str
    interval_minutes: int
    notify_email: bool = True


class CreateSearchHandler:
    """Subscribe the caller to ``query``, run every ``interval_minutes``.

    Rules:
    - with no web search provider configured (``enabled`` false) nothing is stored:
      ``SearchesNotConfigured`` (a subscription that could never run is refused, not kept);
    - the caller must be able to write to the project (``project_to_write``: a non-member gets
      ``ProjectNotFound``, a viewer ``PermissionDenied``); no project: the personal one;
    - query and interval as ``SearchSubscription.create`` says (15 minutes to 31 days);
    - at most ``MAX_ACTIVE_SUBSCRIPTIONS`` active subscriptions per user, in every project
      (``SearchLimitReached``, a 409); counted with the caller's account locked, so creations
      (and resumptions) at the same moment cannot all take the last place;
    - the first run is due at once: the scheduler's next tick runs it, and its results are
      notified like any later run's (the user asked for them).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdGenerator, *, enabled: bool) -> None:
        self._uow, self._clock, self._ids, self._enabled = uow, clock, ids, enabled

    async def execute(self, command: CreateSearch) -> SearchSubscription:
        if not self._enabled:
            raise SearchesNotConfigured()
        async with self._uow as uow:
            project_id = await project_to_write(uow, command.user_id, command.project_id)
            subscription = SearchSubscription.create(
                id=self._ids.new_id(), user_id=command.user_id, project_id=project_id,
                query=command.query, interval_minutes=command.interval_minutes,
                now=self._clock.now(), notify_email=command.notify_email,
            )  # fmt: skip
            await uow.users.get_for_update(command.user_id)
            await check_active_cap(uow, command.user_id)
            await uow.searches.add(subscription)
            await uow.commit()
        return subscription


async def check_active_cap(uow: UnitOfWork, user_id: UUID) -> None:
    """``SearchLimitReached`` when ``user_id`` already has the most active subscriptions.
    Call with the account locked (``users.get_for_update``): a count without the lock lets
    every request at the same moment take the last place."""
    if await uow.searches.count_active_for_user(user_id) >= MAX_ACTIVE_SUBSCRIPTIONS:
        raise SearchLimitReached(
            f"A user has at most {MAX_ACTIVE_SUBSCRIPTIONS} active recurring searches; pause "
            "or delete one first.",
            limit=MAX_ACTIVE_SUBSCRIPTIONS,
        )
