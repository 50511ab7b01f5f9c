"""/api/searches and /api/notifications on the fake container: the shapes on the wire, access
(a stranger's 404, a viewer's 403), problems (searches off: 422, the cap: 409) and pages."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer
from tests.unit.http.test_project_routes import new_project
from whalli.domain.model.notifications import Notification
from whalli.domain.model.searches import MAX_ACTIVE_SUBSCRIPTIONS, SearchResult, fingerprint


@pytest.fixture
async def ada(container: FakeContainer, client: AsyncTestClient[Litestar]) -> Caller:
    return await seed_caller(container, client, "ada")


@pytest.fixture
async def bob(container: FakeContainer, client: AsyncTestClient[Litestar]) -> Caller:
    return await seed_caller(container, client, "bob")


async def _search(caller: Caller, project_id: str, **fields: object) -> dict[str, object]:
    body = {"projectId": project_id, "query": "pg news", "intervalMinutes": 60, **fields}
    created = await caller.call("POST", "/api/searches", body)
    assert created.status_code == 201, created.text
    found: dict[str, object] = created.json()
    return found


async def test_a_search_is_created_read_listed_changed_and_deleted(ada: Caller) -> None:
    project = await new_project(ada)
    made = await _search(ada, project, notifyEmail=False)

    assert made["query"] == "pg news"
    assert (made["projectId"], made["userId"]) == (project, ada.id)
    assert (made["intervalMinutes"], made["active"], made["notifyEmail"]) == (60, True, False)
    assert made["lastRunAt"] is None
    path = f"/api/searches/{made['id']}"
    assert (await ada.call("GET", path)).json() == made
    listed = await ada.call("GET", f"/api/searches?projectId={project}")
    assert listed.json() == {"items": [made], "nextCursor": None}

    changed = await ada.call("PATCH", path, {"active": False, "intervalMinutes": 1440})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["active"], changed.json()["intervalMinutes"]) == (False, 1440)
    assert (await ada.call("DELETE", path)).status_code == 204
    gone = await ada.call("GET", path)
    assert (gone.status_code, gone.json()["code"]) == (404, "search_subscription_not_found")


async def test_a_stranger_gets_404_everywhere_and_a_viewer_403_on_changes(
    ada: Caller, bob: Caller
) -> None:
    private = await new_project(ada)
    made = await _search(ada, private)
    path = f"/api/searches/{made['id']}"

    for method, url, body in [
        ("GET", path, None), ("PATCH", path, {"active": False}), ("DELETE", path, None),
        ("GET", f"{path}/results", None),
    ]:  # fmt: skip
        answer = await bob.call(method, url, body)
        assert (answer.status_code, answer.json()["code"]) == (404, "search_subscription_not_found")
    listed = await bob.call("GET", f"/api/searches?projectId={private}")
    assert listed.status_code == 404
    created = await bob.call("POST", "/api/searches", {"projectId": private, "query": "x",
                                                       "intervalMinutes": 60})  # fmt: skip
    assert created.status_code == 404

    shared = await new_project(ada, (bob, "viewer"))
    seen = await _search(ada, shared)
    shared_path = f"/api/searches/{seen['id']}"
    assert (await bob.call("GET", shared_path)).status_code == 200
    refused = await bob.call("PATCH", shared_path, {"query": "mine now"})
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")


async def test_with_searches_off_creating_one_is_a_422_problem(
    container: FakeContainer, ada: Caller
) -> None:
    container.searches_enabled = False

    answer = await ada.call("POST", "/api/searches", {"query": "pg", "intervalMinutes": 60})

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "searches_not_configured"


async def test_bad_fields_and_the_cap_are_problems(ada: Caller) -> None:
    project = await new_project(ada)
    for body, status, code in [
        ({"query": "", "intervalMinutes": 60}, 422, "invalid_input"),
        ({"query": "pg", "intervalMinutes": 1}, 422, "invalid_schedule"),
        ({"query": "pg", "intervalMinutes": 60, "cron": "* * *"}, 400, None),
    ]:
        answer = await ada.call("POST", "/api/searches", {"projectId": project, **body})
        assert answer.status_code == status, answer.text
        assert code is None or answer.json()["code"] == code
    for _ in range(MAX_ACTIVE_SUBSCRIPTIONS):
        await _search(ada, project)
    over = await ada.call("POST", "/api/searches", {"projectId": project, "query": "one more",
                                                    "intervalMinutes": 60})  # fmt: skip
    assert (over.status_code, over.json()["code"]) == (409, "search_limit_reached")
    assert over.json()["limit"] == MAX_ACTIVE_SUBSCRIPTIONS


async def test_results_page_newest_first(container: FakeContainer, ada: Caller) -> None:
    made = await _search(ada, await new_project(ada))
    subscription_id = uuid.UUID(str(made["id"]))
    now = container.clock.now()
    async with container.uow() as uow:
        await uow.searches.add_results([
            SearchResult(id=uuid.uuid4(), subscription_id=subscription_id,
                         url=f"https://example.com/{n}", title=f"T{n}", snippet="s",
                         fingerprint=fingerprint(f"https://example.com/{n}"),
                         found_at=now + timedelta(seconds=n))
            for n in range(3)
        ])  # fmt: skip
        await uow.commit()

    first = await ada.call("GET", f"/api/searches/{subscription_id}/results?limit=2")
    body = first.json()
    assert [r["url"] for r in body["items"]] == ["https://example.com/2", "https://example.com/1"]
    assert set(body["items"][0]) == {"id", "url", "title", "snippet", "foundAt"}
    rest = await ada.call(
        "GET", f"/api/searches/{subscription_id}/results?limit=2&cursor={body['nextCursor']}"
    )
    assert [r["url"] for r in rest.json()["items"]] == ["https://example.com/0"]
    assert rest.json()["nextCursor"] is None


async def test_notifications_list_count_and_are_marked_read_by_their_user_only(
    container: FakeContainer, ada: Caller, bob: Caller
) -> None:
    made = []
    async with container.uow() as uow:
        for n in range(3):
            note = Notification(id=uuid.uuid4(), user_id=ada.user.id, kind="search_results",
                                title=f"{n} new results for pg", link="/api/searches/x/results",
                                created_at=container.clock.advance(1))  # fmt: skip
            await uow.notifications.add(note)
            made.append(note)
        await uow.commit()

    listed = (await ada.call("GET", "/api/notifications?limit=2")).json()
    assert [n["title"] for n in listed["items"]] == ["2 new results for pg", "1 new results for pg"]
    assert listed["items"][0]["readAt"] is None
    assert listed["nextCursor"] is not None
    assert (await ada.call("GET", "/api/notifications/unread-count")).json() == {"count": 3}
    assert (await bob.call("GET", "/api/notifications")).json() == {"items": [], "nextCursor": None}

    path = f"/api/notifications/{made[0].id}/read"
    stranger = await bob.call("POST", path)
    assert (stranger.status_code, stranger.json()["code"]) == (404, "notification_not_found")
    read = await ada.call("POST", path)
    assert read.status_code == 200
    assert read.json()["readAt"] is not None
    unread = (await ada.call("GET", "/api/notifications?unread=true")).json()
    assert len(unread["items"]) == 2
    assert (await ada.call("POST", "/api/notifications/read-all")).json() == {"marked": 2}
    assert (await ada.call("GET", "/api/notifications/unread-count")).json() == {"count": 0}
