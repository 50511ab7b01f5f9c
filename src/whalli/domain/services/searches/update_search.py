"""Use case: change a recurring search (its query, interval, e-mail copies) or pause it."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.errors import SearchSubscriptionNotFound, UserNotFound
from whalli.domain.model.searches import SearchSubscription, search_query, validate_interval
from whalli.domain.services.searches.access import require_to_change
from whalli.domain.services.searches.create_search import check_active_cap
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class UpdateSearch(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    subscription_id: UUID
    # UNSET: unchanged
    query: str | msgspec.UnsetType = msgspec.UNSET
    interval_minutes: int | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    notify_email: bool | msgspec.UnsetType = msgspec.UNSET


class UpdateSearchHandler:
    """Change a subscription.

    Rules:
    - who may, checked before the fields (``require_to_change``): its creator may change
      anything while they may write in its project, and stop it (``active`` false,
      ``notify_email`` false, nothing else changed) with any role; other owners and editors
      may only stop it (a new query or interval, ``active`` or ``notify_email`` true:
      ``PermissionDenied``, even when it is already so); other viewers may not
      (``PermissionDenied``), anyone else is told ``SearchSubscriptionNotFound``;
    - the query and interval as ``SearchSubscription.create`` checks them;
    - a new query is due at once (the next scheduler tick runs it); results of the old one stay;
    - a new interval counts from the last claimed run (``claimed_at``: the scheduler took it,
      whether or not it ran yet), never from ``last_run_at``, so a claimed run still queued is
      never made due again (it would run twice); a run already due (none yet, a new query not
      yet run, an overdue one) stays due;
    - the row is locked while it changes: a claim at the same moment skips it (the next tick
      takes it, with the change), so a change never undoes a claim nor a run's record;
    - activating a paused subscription counts against its user's cap of active ones
      (``SearchLimitReached``), with that user's account locked before the row (the order
      ``CreateSearch`` and an account's deletion take), so resumptions and creations at the
      same moment cannot all take the last place; one overdue meanwhile runs at the next
      tick, once;
    - an empty change changes nothing (but is checked like a change).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, command: UpdateSearch) -> SearchSubscription:
        async with self._uow as uow:
            if command.active is True:  # it may resume it
                await _lock_creator(uow, command.subscription_id)
            found = await require_to_change(
                uow, command.subscription_id, command.user_id, stopping=_stops(command),
                lock=True,
            )  # fmt: skip
            now, unset = self._clock.now(), msgspec.UnsetType
            changed = msgspec.structs.replace(found, updated_at=now)
            if not isinstance(command.query, unset):
                changed.query = search_query(command.query)
                if changed.query != found.query:
                    changed.next_run_at = now
            if not isinstance(command.interval_minutes, unset):
                validate_interval(command.interval_minutes)
                changed.interval_minutes = command.interval_minutes
                if found.claimed_at is not None and changed.next_run_at > now:
                    minutes = timedelta(minutes=command.interval_minutes)
                    changed.next_run_at = found.claimed_at + minutes
            if not isinstance(command.notify_email, unset):
                changed.notify_email = command.notify_email
            if not isinstance(command.active, unset):
                if command.active and not found.active:
                    await check_active_cap(uow, found.user_id)
                changed.active = command.active
            if msgspec.structs.replace(changed, updated_at=found.updated_at) == found:
                return found
            await uow.searches.update(changed)
            await uow.commit()
        return changed


async def _lock_creator(uow: UnitOfWork, subscription_id: UUID) -> None:
    """Hold the account of the subscription's creator (whose cap a resumption counts)."""
    creator = (await uow.searches.get(subscription_id)).user_id
    try:
        await uow.users.get_for_update(creator)
    except UserNotFound:  # deleted since, and its subscriptions with it
        raise SearchSubscriptionNotFound() from None


def _stops(command: UpdateSearch) -> bool:
    """Whether the change only stops things: pausing, turning emails off."""
    unset = msgspec.UnsetType
    return (
        isinstance(command.query, unset)
        and isinstance(command.interval_minutes, unset)
        and command.active in (False, msgspec.UNSET)
        and command.notify_email in (False, msgspec.UNSET)
    )
