"""Recurring web searches: /api/searches (subscriptions in a project, and what they found)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from whalli.domain.model import searches as model
from whalli.domain.model.principal import Principal
from whalli.domain.services.searches.access import DEFAULT_PAGE_SIZE
from whalli.domain.services.searches.create_search import CreateSearch, CreateSearchHandler
from whalli.domain.services.searches.delete_search import DeleteSearch, DeleteSearchHandler
from whalli.domain.services.searches.get_search import GetSearch, GetSearchHandler
from whalli.domain.services.searches.list_search_results import (
    ListSearchResults,
    ListSearchResultsHandler,
)
from whalli.domain.services.searches.list_searches import ListSearches, ListSearchesHandler
from whalli.domain.services.searches.update_search import UpdateSearch, UpdateSearchHandler
from whalli.entrypoints.http.schemas import Inbound, Schema

Limit = Annotated[int, QueryParameter(description="1 to 100")]
Cursor = Annotated[str | None, QueryParameter(description="nextCursor of the previous page")]


class Search(Schema):
    id: UUID
    project_id: UUID
    user_id: UUID  # who made it: the one notified
    query: str
    interval_minutes: int
    active: bool
    notify_email: bool
    # no defaults: always present. The last run that queried the provider and stored its
    # results (null before the first); the reason and time of a run that failed since (null
    # once one succeeds).
    last_run_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    next_run_at: datetime
    created_at: datetime
    updated_at: datetime


class SearchCreate(Inbound):
    query: str
    interval_minutes: int
    project_id: UUID | None = None  # default: the personal project
    notify_email: bool = True


class SearchUpdate(Inbound, omit_defaults=True):
    query: str | msgspec.UnsetType = msgspec.UNSET
    interval_minutes: int | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    notify_email: bool | msgspec.UnsetType = msgspec.UNSET


class SearchPage(Schema):
    items: list[Search]
    next_cursor: str | None  # no default: always present, null on the last page


class SearchResult(Schema):
    id: UUID
    url: str
    title: str
    snippet: str
    found_at: datetime


class SearchResultPage(Schema):
    items: list[SearchResult]
    next_cursor: str | None


def _search(found: model.SearchSubscription) -> Search:
    return msgspec.convert(found, Search, from_attributes=True)


def _result(found: model.SearchResult) -> SearchResult:
    return msgspec.convert(found, SearchResult, from_attributes=True)


class SearchController(Controller):
    """A recurring search runs its query every interval (15 minutes to 31 days) with the
    server's web search provider; new results notify the user who made it (in-app, and by
    email with `notifyEmail` when email is configured). A search is as visible as its project:
    members read it, anyone else gets a 404. Since it notifies its creator alone, only they
    change it (while they may write in the project) and, whatever their role, may always stop
    it; other owners and editors may only stop it (pause it, turn its emails off, delete it):
    anything else is a 403. `lastRunAt` is the
    last run that searched and stored its results; a run that failed (the provider refused it,
    or an attempt the queue retries failed) sets `lastError` (a short reason) and `lastErrorAt`
    instead, cleared by the next run that succeeds."""

    path = "/api/searches"
    tags = ["searches"]

    @post(
        "/",
        summary="Subscribe to a recurring web search",
        description="Its first run is due at once. 422 `searches_not_configured` when the "
        "server has no search provider; 409 `search_limit_reached` beyond 20 active searches "
        "per user.",
    )
    async def create(
        self,
        principal: NamedDependency[Principal],
        create_search: NamedDependency[CreateSearchHandler],
        data: JSONBody[SearchCreate],
    ) -> Search:
        command = CreateSearch(
            user_id=principal.user_id, project_id=data.project_id, query=data.query,
            interval_minutes=data.interval_minutes, notify_email=data.notify_email,
        )  # fmt: skip
        return _search(await create_search.execute(command))

    @get("/", summary="A project's recurring searches, newest first (cursor pagination)")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_searches: NamedDependency[ListSearchesHandler],
        project_id: Annotated[
            UUID | None,
            QueryParameter(name="projectId", description="Default: the personal project"),
        ] = None,
        limit: Limit = DEFAULT_PAGE_SIZE,
        cursor: Cursor = None,
    ) -> SearchPage:
        command = ListSearches(
            user_id=principal.user_id, project_id=project_id, limit=limit, cursor=cursor
        )
        page = await list_searches.execute(command)
        return SearchPage(items=[_search(s) for s in page.items], next_cursor=page.next_cursor)

    @get("/{search_id:uuid}", summary="A recurring search")
    async def read(
        self,
        principal: NamedDependency[Principal],
        get_search: NamedDependency[GetSearchHandler],
        search_id: FromPath[UUID],
    ) -> Search:
        command = GetSearch(user_id=principal.user_id, subscription_id=search_id)
        return _search(await get_search.execute(command))

    @patch(
        "/{search_id:uuid}",
        summary="Change a recurring search, or pause it (`active: false`)",
        description="Fields left out stay. A new query runs at once; a new interval counts "
        "from the last run; resuming counts against the cap of active searches (409). Only "
        "its creator may change its query or interval or set `active` or `notifyEmail` to "
        "true; other owners and editors of the project may only stop it (`active: false`, "
        "`notifyEmail: false`): anything more is a 403 `permission_denied`.",
    )
    async def update(
        self,
        principal: NamedDependency[Principal],
        update_search: NamedDependency[UpdateSearchHandler],
        search_id: FromPath[UUID],
        data: JSONBody[SearchUpdate],
    ) -> Search:
        command = UpdateSearch(
            user_id=principal.user_id, subscription_id=search_id, query=data.query,
            interval_minutes=data.interval_minutes, active=data.active,
            notify_email=data.notify_email,
        )  # fmt: skip
        return _search(await update_search.execute(command))

    @delete(
        "/{search_id:uuid}",
        summary="Delete a recurring search and its results",
        description="Its creator may, whatever their role, and so may the project's owners "
        "and editors (another member's search too); a viewer deleting another's: 403.",
    )
    async def remove(
        self,
        principal: NamedDependency[Principal],
        delete_search: NamedDependency[DeleteSearchHandler],
        search_id: FromPath[UUID],
    ) -> None:
        await delete_search.execute(
            DeleteSearch(user_id=principal.user_id, subscription_id=search_id)
        )

    @get("/{search_id:uuid}/results", summary="What a search found, newest first (cursor)")
    async def results(
        self,
        principal: NamedDependency[Principal],
        list_search_results: NamedDependency[ListSearchResultsHandler],
        search_id: FromPath[UUID],
        limit: Limit = DEFAULT_PAGE_SIZE,
        cursor: Cursor = None,
    ) -> SearchResultPage:
        command = ListSearchResults(
            user_id=principal.user_id, subscription_id=search_id, limit=limit, cursor=cursor
        )
        page = await list_search_results.execute(command)
        items = [_result(r) for r in page.items]
        return SearchResultPage(items=items, next_cursor=page.next_cursor)
