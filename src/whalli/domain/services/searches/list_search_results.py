"""Use case: one page of a recurring search's results, newest first."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.searches import SearchResult
from whalli.domain.services.searches.access import (
    DEFAULT_PAGE_SIZE,
    next_cursor,
    page_start,
    require_subscription,
)
from whalli.ports.unit_of_work import UnitOfWork


class ListSearchResults(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    subscription_id: UUID
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


class SearchResultPage(Value, frozen=True, kw_only=True):
    items: list[SearchResult]
    next_cursor: str | None  # None on the last page


class ListSearchResultsHandler:
    """The results a subscription found, newest first (``found_at``, id), for any member of its
    project (anyone else: ``SearchSubscriptionNotFound``); ``limit`` 1 to 100, cursor as chat
    lists have it."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListSearchResults) -> SearchResultPage:
        before = page_start(command.limit, command.cursor)
        async with self._uow as uow:
            subscription = await require_subscription(
                uow, command.subscription_id, command.user_id, "read"
            )
            found = await uow.searches.list_results(
                subscription.id, limit=command.limit + 1, before=before
            )
        items = found[: command.limit]
        last = (items[-1].found_at, items[-1].id) if items else None
        cursor = None if last is None else next_cursor(len(found), command.limit, last)
        return SearchResultPage(items=items, next_cursor=cursor)
