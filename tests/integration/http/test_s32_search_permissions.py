"""Who may change a recurring search in a shared project (s32), on the real app (Postgres, Redis,
S3), runs executed in-process against a loopback SearXNG and a loopback SMTP server.

A search notifies its creator alone (in-app, and by email with ``notifyEmail``), so only they
change it; the project's other owners and editors may only stop it (pause it, turn its emails
off, delete it): a new query or interval, or turning its runs or emails back on, is a 403
problem and leaves the row as it was. A non-member gets a 404 for anything."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.http.conftest import team_project
from tests.integration.http.test_s23_hunt_searches import Hunt, hunt_app
from tests.integration.http.test_search_last_run import smtp, web  # noqa: F401  (fixtures)
from tests.support.fake_search import FakeSearchServer
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.errors import SearchSubscriptionNotFound
from whalli.domain.model.searches import SearchSubscription
from whalli.ports.unit_of_work import UnitOfWork

# What only the creator may ask, each on a search in the state where it would change something
# (``notifyEmail`` true on one with emails off, ``active`` true on a paused one).
NOT_A_STOP = [
    pytest.param({"query": "something else entirely"}, id="query"),
    pytest.param({"intervalMinutes": 15}, id="interval"),
    pytest.param({"notifyEmail": True}, id="emails-on"),
    pytest.param({"active": True}, id="resume"),
    pytest.param({"active": False, "query": "something else"}, id="pause-and-requery"),
]
STOPS = [
    pytest.param({"active": False}, id="pause"),
    pytest.param({"notifyEmail": False}, id="emails-off"),
    pytest.param({"active": False, "notifyEmail": False}, id="both"),
]


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,  # noqa: F811
    smtp: FakeSmtpServer,  # noqa: F811
) -> AsyncIterator[Hunt]:  # fmt: skip
    async with hunt_app(stack_urls, unique, web, smtp) as found:
        yield found


@dataclass
class Team:
    """A project of ``owner`` with two editors, ``bob`` (who makes the searches) and ``carol``."""

    hunt: Hunt
    project: str
    owner: dict[str, Any]
    bob: dict[str, Any]
    carol: dict[str, Any]

    def who(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = getattr(self, name)
        return found

    async def search(self, **fields: Any) -> dict[str, Any]:
        """A search of bob's in the project (emails off, or paused, first when asked)."""
        made = await self.hunt.subscribe(self.bob, "bob's own query", projectId=self.project)
        if fields:
            set_up = await self.patch(self.bob, made["id"], fields)
            assert set_up.status_code == 200, set_up.text
        return made

    async def patch(self, who: dict[str, Any], search_id: str, body: dict[str, Any]) -> Any:
        path = f"/api/searches/{search_id}"
        return await self.hunt.client.patch(path, json=body, headers=who["auth"])

    async def delete(self, who: dict[str, Any], search_id: str) -> Any:
        return await self.hunt.client.delete(f"/api/searches/{search_id}", headers=who["auth"])

    async def stored(self, search_id: str) -> SearchSubscription:
        uow: UnitOfWork = await resolved(self.hunt.chat.world.container.adapters.unit_of_work())
        async with uow:
            return await uow.searches.get(uuid.UUID(search_id))


@pytest.fixture
async def team(hunt: Hunt) -> Team:
    owner, bob, carol = (await hunt.user("owner"), await hunt.verified_user("bob"),
                         await hunt.verified_user("carol"))  # fmt: skip
    project = await team_project(hunt.chat, owner, bob, "editor")
    added = await hunt.client.post(
        f"/api/projects/{project}/members",
        json={"email": carol["email"], "role": "editor"}, headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text
    return Team(hunt, project, owner, bob, carol)


def _setup_for(body: dict[str, Any]) -> dict[str, Any]:
    """The state in which ``body`` would turn something on."""
    if body.get("notifyEmail") is True:
        return {"notifyEmail": False}
    if body.get("active") is True:
        return {"active": False}
    return {}


def _refused(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    problem: dict[str, Any] = answer.json()
    assert problem["code"] == "permission_denied"
    assert problem["status"] == 403
    return problem


@pytest.mark.parametrize("moderator", ["carol", "owner"])  # another editor, the project's owner
@pytest.mark.parametrize("body", NOT_A_STOP)
async def test_another_owner_or_editor_may_not_change_a_members_search_nor_turn_it_on(
    team: Team, moderator: str, body: dict[str, Any]
) -> None:
    made = await team.search(**_setup_for(body))
    before = await team.stored(made["id"])

    answer = await team.patch(team.who(moderator), made["id"], body)

    problem = _refused(answer)
    assert "Only the member who made this search" in problem["detail"]
    assert "You may stop it" in problem["detail"]
    assert await team.stored(made["id"]) == before  # nothing written, updatedAt included


async def test_emails_an_editor_tried_to_turn_on_never_reach_the_creator(team: Team) -> None:
    made = await team.search(notifyEmail=False)

    _refused(await team.patch(team.carol, made["id"], {"notifyEmail": True}))
    await team.hunt.run(made["id"])

    assert team.hunt.smtp.messages == []
    [notification] = (await team.hunt.notifications(team.bob))["items"]  # in-app only
    assert notification["link"].endswith(f"/api/searches/{made['id']}/results")


@pytest.mark.parametrize("moderator", ["carol", "owner"])
@pytest.mark.parametrize("body", STOPS)
async def test_another_owner_or_editor_may_stop_a_members_search(
    team: Team, moderator: str, body: dict[str, Any]
) -> None:
    made = await team.search()
    before = await team.stored(made["id"])
    assert (before.active, before.notify_email) == (True, True)

    answer = await team.patch(team.who(moderator), made["id"], body)

    assert answer.status_code == 200, answer.text
    after = await team.stored(made["id"])
    assert after.active is body.get("active", True)
    assert after.notify_email is body.get("notifyEmail", True)
    assert (after.user_id, after.query, after.interval_minutes) == (
        before.user_id, before.query, before.interval_minutes)  # fmt: skip
    assert (answer.json()["active"], answer.json()["notifyEmail"]) == (
        after.active, after.notify_email)  # fmt: skip


@pytest.mark.parametrize("moderator", ["carol", "owner"])
async def test_another_owner_or_editor_may_delete_a_members_search(
    team: Team, moderator: str
) -> None:
    made = await team.search()

    answer = await team.delete(team.who(moderator), made["id"])

    assert answer.status_code == 204, answer.text
    with pytest.raises(SearchSubscriptionNotFound, match="not found"):
        await team.stored(made["id"])


@pytest.mark.parametrize("creator", ["bob", "owner"])  # an editor, the project's owner
async def test_its_creator_may_change_anything_in_their_own_search(
    team: Team, creator: str
) -> None:
    who = team.who(creator)
    made = await team.hunt.subscribe(who, "my query", projectId=team.project, notifyEmail=False)
    path_id = made["id"]

    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"query": "my new query"}, {"query": "my new query"}),
        ({"intervalMinutes": 15}, {"interval_minutes": 15}),
        ({"notifyEmail": True}, {"notify_email": True}),
        ({"active": False}, {"active": False}),
        ({"active": True}, {"active": True}),
    ]
    for body, expected in steps:
        answer = await team.patch(who, path_id, body)
        assert answer.status_code == 200, (body, answer.text)
        stored = await team.stored(path_id)
        assert {name: getattr(stored, name) for name in expected} == expected, body
    assert (await team.delete(who, path_id)).status_code == 204
    with pytest.raises(SearchSubscriptionNotFound, match="not found"):
        await team.stored(path_id)


@pytest.mark.parametrize("body", [*NOT_A_STOP, *STOPS])
async def test_a_non_member_gets_404_for_any_change_and_for_a_deletion(
    team: Team, body: dict[str, Any]
) -> None:
    stranger = await team.hunt.user("stranger")
    made = await team.search(**_setup_for(body))
    before = await team.stored(made["id"])

    changed = await team.patch(stranger, made["id"], body)
    deleted = await team.delete(stranger, made["id"])

    for answer in (changed, deleted):
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "search_subscription_not_found"
    assert await team.stored(made["id"]) == before
