"""Project and member routes: strangers get 404 like a missing id, members lacking rights 403."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer

SeedCaller = Callable[[str], Awaitable[Caller]]


@pytest.fixture
def seed(container: FakeContainer, client: AsyncTestClient[Litestar]) -> SeedCaller:
    async def make(name: str) -> Caller:
        return await seed_caller(container, client, name)

    return make


async def new_project(owner: Caller, *members: tuple[Caller, str]) -> str:
    created = await owner.call("POST", "/api/projects", {"name": "Research"})
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    for member, role in members:
        added = await owner.call(
            "POST", f"/api/projects/{project_id}/members", {"email": member.email, "role": role}
        )
        assert added.status_code == 201, added.text
    return project_id


async def member_roles(caller: Caller, project_id: str) -> dict[str, str]:
    response = await caller.call("GET", f"/api/projects/{project_id}/members")
    assert response.status_code == 200, response.text
    return {m["userId"]: m["role"] for m in response.json()}


# --- the happy path ---------------------------------------------------------------------------
async def test_an_owner_creates_renames_shares_and_deletes_a_project(seed: SeedCaller) -> None:
    ada, bob = await seed("ada"), await seed("bob")
    project_id = await new_project(ada)

    renamed = await ada.call("PATCH", f"/api/projects/{project_id}", {"name": " Market  study "})
    shared = await ada.call(
        "POST", f"/api/projects/{project_id}/members", {"email": "BOB@example.com"}
    )
    members = await bob.call("GET", f"/api/projects/{project_id}/members")
    bobs_projects = await bob.call("GET", "/api/projects")

    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Market study"
    assert renamed.json()["ownerId"] == ada.id
    assert shared.json() == {
        "projectId": project_id, "userId": bob.id, "role": "editor",
        "joinedAt": shared.json()["joinedAt"],
    }  # fmt: skip
    assert [(m["email"], m["name"], m["role"]) for m in members.json()] == [
        ("ada@example.com", "Ada", "owner"),
        ("bob@example.com", "Bob", "editor"),
    ]
    assert [p["id"] for p in bobs_projects.json()] == [project_id]

    deleted = await ada.call("DELETE", f"/api/projects/{project_id}")
    assert deleted.status_code == 204
    assert (await ada.call("GET", f"/api/projects/{project_id}")).status_code == 404
    assert (await bob.call("GET", "/api/projects")).json() == []


async def test_a_patch_without_fields_changes_nothing(seed: SeedCaller) -> None:
    ada = await seed("ada")
    project_id = await new_project(ada)
    before = (await ada.call("GET", f"/api/projects/{project_id}")).json()

    response = await ada.call("PATCH", f"/api/projects/{project_id}", {})

    assert response.status_code == 200
    assert response.json() == before


async def test_a_request_without_a_credential_is_401(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/projects")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


# --- IDOR: another user's ids behave exactly like ids that do not exist ------------------------
def stranger_routes(
    project: str, owner: str, stranger: str, key: str
) -> list[tuple[str, str, Any]]:
    members = f"/api/projects/{project}/members"
    return [
        ("GET", f"/api/projects/{project}", None),
        ("PATCH", f"/api/projects/{project}", {"name": "Mine now"}),
        ("DELETE", f"/api/projects/{project}", None),
        ("GET", members, None),
        ("POST", members, {"email": "bob@example.com", "role": "owner"}),
        ("PATCH", f"{members}/{owner}", {"role": "viewer"}),
        ("DELETE", f"{members}/{owner}", None),
        ("DELETE", f"{members}/{stranger}", None),
        ("DELETE", f"/api/keys/{key}", None),
    ]


@pytest.mark.parametrize("index", range(9), ids=lambda i: f"route-{i}")
async def test_another_users_ids_are_404_exactly_like_missing_ones(
    seed: SeedCaller, container: FakeContainer, index: int
) -> None:
    ada, bob = await seed("ada"), await seed("bob")
    project_id = await new_project(ada)
    key = (await ada.call_signed_in("POST", "/api/keys", {"name": "ci"})).json()
    state_before = (
        (await ada.call("GET", f"/api/projects/{project_id}")).json(),
        await member_roles(ada, project_id),
        (await ada.call("GET", "/api/keys")).json(),
    )

    real = stranger_routes(project_id, ada.id, bob.id, key["id"])[index]
    missing = stranger_routes(str(uuid.uuid4()), ada.id, bob.id, str(uuid.uuid4()))[index]
    on_real = await bob.call(*real)
    on_missing = await bob.call(*missing)

    assert on_real.status_code == on_missing.status_code == 404
    assert on_real.json()["code"] == on_missing.json()["code"]
    assert on_real.json()["detail"] == on_missing.json()["detail"]
    assert state_before == (
        (await ada.call("GET", f"/api/projects/{project_id}")).json(),
        await member_roles(ada, project_id),
        (await ada.call("GET", "/api/keys")).json(),
    )


# --- what each role may do ----------------------------------------------------------------------
def member_routes(project: str, me: str, other: str) -> dict[str, tuple[str, str, Any]]:
    members = f"/api/projects/{project}/members"
    return {
        "get": ("GET", f"/api/projects/{project}", None),
        "list members": ("GET", members, None),
        "rename": ("PATCH", f"/api/projects/{project}", {"name": "Renamed"}),
        "empty patch": ("PATCH", f"/api/projects/{project}", {}),
        "add member": ("POST", members, {"email": "newcomer@example.com"}),
        "change role": ("PATCH", f"{members}/{other}", {"role": "viewer"}),
        "remove other": ("DELETE", f"{members}/{other}", None),
        "leave": ("DELETE", f"{members}/{me}", None),
        "delete": ("DELETE", f"/api/projects/{project}", None),
    }


EVERYONE = {"get", "list members", "leave"}
ALLOWED = {
    "viewer": EVERYONE,
    "editor": EVERYONE,
    "owner": EVERYONE
    | {"rename", "empty patch", "add member", "change role", "remove other", "delete"},
}


@pytest.mark.parametrize("role", ["viewer", "editor", "owner"])
@pytest.mark.parametrize("action", list(member_routes("p", "m", "o")))
async def test_each_role_may_call_exactly_the_routes_it_is_allowed_to(
    seed: SeedCaller, role: str, action: str
) -> None:
    ada, me, other = await seed("ada"), await seed("me"), await seed("other")
    await seed("newcomer")
    project_id = await new_project(ada, (me, role), (other, "editor"))
    roles_before = await member_roles(ada, project_id)

    response = await me.call(*member_routes(project_id, me.id, other.id)[action])

    if action in ALLOWED[role]:
        assert response.status_code in (200, 201, 204), response.text
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert await member_roles(ada, project_id) == roles_before


async def test_a_removed_member_loses_access_on_their_next_request(seed: SeedCaller) -> None:
    ada, bob = await seed("ada"), await seed("bob")
    project_id = await new_project(ada, (bob, "editor"))
    assert (await bob.call("GET", f"/api/projects/{project_id}")).status_code == 200

    removed = await ada.call("DELETE", f"/api/projects/{project_id}/members/{bob.id}")

    assert removed.status_code == 204
    after = await bob.call("GET", f"/api/projects/{project_id}")
    assert after.status_code == 404
    assert after.json()["code"] == "project_not_found"
    assert (await bob.call("GET", "/api/projects")).json() == []


async def test_the_last_owner_cannot_leave_and_an_unknown_member_is_404(seed: SeedCaller) -> None:
    ada = await seed("ada")
    project_id = await new_project(ada)

    leaving = await ada.call("DELETE", f"/api/projects/{project_id}/members/{ada.id}")
    unknown = await ada.call("PATCH", f"/api/projects/{project_id}/members/{uuid.uuid4()}",
                             {"role": "viewer"})  # fmt: skip

    assert (leaving.status_code, leaving.json()["code"]) == (409, "last_owner")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "membership_not_found")


async def test_a_misspelt_field_is_refused(seed: SeedCaller) -> None:
    ada = await seed("ada")
    response = await ada.call("POST", "/api/projects", {"name": "x", "nmae": "y"})
    assert response.status_code == 400
