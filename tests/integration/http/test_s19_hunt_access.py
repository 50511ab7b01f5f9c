"""Hunt S19 of access control and accounting, end to end through the real app (Postgres,
Redis): projects and their members (roles, the last owner, a removed or demoted member's
access to chats, files and shares), personal API keys (revoked, disabled), presets (a model the
plan no longer includes), usage (ranges, bad input, totals against their breakdowns), admin
routes, and chat list pagination and search with odd input. What a caller may not see answers
404, bad input a 4xx problem naming what was wrong, never a 500, and nothing is half written."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_files import TEXT, form, multipart
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.support.fake_providers import Reply, openai_stream
from tests.unit.test_chatgpt_export import lisbon
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

PROBLEM = "application/problem+json"


def _problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"]
    if field is not None:  # a domain rule's ``field``, or Litestar's errors naming it
        errors = body.get("errors", [])
        named = [body.get("field"), *(e.get("key") for e in errors)]
        said = " ".join(str(e.get("message", "")) for e in errors)
        assert field in named or f"`{field}`" in said or f"$.{field}" in said, body
    return body


def _uid(person: dict[str, Any]) -> str:
    user_id: str = person["user"]["id"]
    return user_id


async def _started(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    """A dev/echo chat started and its reply read to the end."""
    started = await chat.start(auth, model="dev/echo", message=f"hi {uuid.uuid4()}", **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started


async def _key(chat: Chat, auth: dict[str, str], name: str = "script") -> dict[str, Any]:
    created = await chat.client.post("/api/keys", json={"name": name}, headers=auth)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _set_user(chat: Chat, admin: dict[str, str], user_id: str, **change: Any) -> None:
    changed = await chat.client.patch(f"/api/admin/users/{user_id}", json=change, headers=admin)
    assert changed.status_code == 200, changed.text


# --- projects and members -------------------------------------------------------------------------
async def test_a_stranger_gets_404_on_every_project_route_and_a_viewer_403_on_managing_ones(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    viewer = await chat.world.register("viewer")
    stranger = await chat.world.register("stranger")
    project_id = await team_project(chat, owner, viewer, "viewer")
    base = f"/api/projects/{project_id}"
    member = f"{base}/members/{_uid(owner)}"
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", base, None),
        ("PATCH", base, {"name": "Mine now"}),
        ("DELETE", base, None),
        ("GET", f"{base}/members", None),
        ("POST", f"{base}/members", {"email": stranger["email"], "role": "owner"}),
        ("PATCH", member, {"role": "viewer"}),
        ("DELETE", member, None),
    ]
    for method, url, body in calls:
        answered = await chat.client.request(method, url, json=body, headers=stranger["auth"])
        _problem(answered, 404)
        missing = url.replace(project_id, str(uuid.uuid4()))
        _problem(await chat.client.request(method, missing, json=body, headers=owner["auth"]), 404)
    for method, url, body in calls[1:3] + calls[4:]:
        _problem(await chat.client.request(method, url, json=body, headers=viewer["auth"]), 403)
    listed = await chat.client.get(f"{base}/members", headers=owner["auth"])
    assert sorted(m["role"] for m in listed.json()) == ["owner", "viewer"]
    read = await chat.client.get(base, headers=viewer["auth"])
    assert (read.status_code, read.json()["name"]) == (200, "Team")


async def test_the_last_owner_can_neither_leave_nor_be_demoted_until_another_owner_exists(
    chat: Chat,
) -> None:
    first = await chat.world.register("first")
    second = await chat.world.register("second")
    project_id = await team_project(chat, first, second, "editor")
    members = f"/api/projects/{project_id}/members"
    _problem(await chat.client.delete(f"{members}/{_uid(first)}", headers=first["auth"]), 409)
    demoted = await chat.client.patch(
        f"{members}/{_uid(first)}", json={"role": "editor"}, headers=first["auth"]
    )
    _problem(demoted, 409)

    promoted = await chat.client.patch(
        f"{members}/{_uid(second)}", json={"role": "owner"}, headers=first["auth"]
    )
    assert (promoted.status_code, promoted.json()["role"]) == (200, "owner")
    left = await chat.client.delete(f"{members}/{_uid(first)}", headers=first["auth"])
    assert left.status_code == 204, left.text

    project = await chat.client.get(f"/api/projects/{project_id}", headers=second["auth"])
    assert project.json()["ownerId"] == _uid(second)
    _problem(await chat.client.get(f"/api/projects/{project_id}", headers=first["auth"]), 404)
    _problem(await chat.client.delete(f"{members}/{_uid(second)}", headers=second["auth"]), 409)


async def test_a_personal_projects_owner_stays_its_owner_and_it_cannot_be_deleted(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    await _started(chat, alice["auth"])  # the personal project exists once a chat is in it
    personal = str(personal_project_id(uuid.UUID(_uid(alice))))
    members = f"/api/projects/{personal}/members"
    added = await chat.client.post(
        members, json={"email": bob["email"], "role": "owner"}, headers=alice["auth"]
    )
    assert added.status_code == 201, added.text

    for auth in (alice["auth"], bob["auth"]):
        _problem(await chat.client.delete(f"{members}/{_uid(alice)}", headers=auth), 403)
        demote = await chat.client.patch(
            f"{members}/{_uid(alice)}", json={"role": "viewer"}, headers=auth
        )
        _problem(demote, 403)
        _problem(await chat.client.delete(f"/api/projects/{personal}", headers=auth), 403)
    listed = await chat.client.get(members, headers=alice["auth"])
    assert {m["userId"]: m["role"] for m in listed.json()} == {
        _uid(alice): "owner",
        _uid(bob): "owner",
    }


async def test_adding_members_refuses_duplicates_unknown_accounts_and_bad_roles_clearly(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    members = f"/api/projects/{project_id}/members"
    again = await chat.client.post(
        members, json={"email": editor["email"].upper(), "role": "viewer"}, headers=owner["auth"]
    )
    _problem(again, 409)
    unknown = await chat.client.post(
        members, json={"email": f"nobody-{uuid.uuid4().hex}@example.com"}, headers=owner["auth"]
    )
    _problem(unknown, 404)
    bad_role = await chat.client.post(
        members, json={"email": editor["email"], "role": "admin"}, headers=owner["auth"]
    )
    assert 400 <= bad_role.status_code < 500, bad_role.text
    _problem(bad_role, bad_role.status_code, "role")
    not_an_email = await chat.client.post(
        members, json={"email": "not an email"}, headers=owner["auth"]
    )
    _problem(not_an_email, 422)
    stranger = str(uuid.uuid4())
    changed = await chat.client.patch(
        f"{members}/{stranger}", json={"role": "viewer"}, headers=owner["auth"]
    )
    _problem(changed, 404)
    _problem(await chat.client.delete(f"{members}/{stranger}", headers=owner["auth"]), 404)
    listed = await chat.client.get(members, headers=owner["auth"])
    assert {m["userId"]: m["role"] for m in listed.json()} == {
        _uid(owner): "owner",
        _uid(editor): "editor",
    }


async def test_a_removed_member_loses_the_projects_chats_files_shares_and_search_at_once(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    word = f"zebra{uuid.uuid4().hex[:8]}"
    started = await chat.start(
        editor["auth"], model="dev/echo", message=f"about the {word}", projectId=project_id
    )
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    chat_id = started["chatId"]
    uploaded = await chat.client.post(
        f"/api/files/upload?projectId={project_id}",
        content=form(TEXT, "notes.txt"), headers={**editor["auth"], **multipart()},
    )  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    shared = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=owner["auth"])
    assert shared.status_code == 201, shared.text
    found = await chat.client.get(f"/api/chats/search?q={word}", headers=editor["auth"])
    assert [h["chatId"] for h in found.json()] == [chat_id]
    read = await chat.client.get(f"/api/chats/{chat_id}", headers=editor["auth"])
    reply_id = read.json()["messages"][-1]["id"]

    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{_uid(editor)}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text

    auth = editor["auth"]
    for method, url, body in [
        ("GET", f"/api/chats/{chat_id}", None),
        ("GET", f"/api/chats/{chat_id}/export", None),
        ("PATCH", f"/api/chats/{chat_id}", {"title": "Taken"}),
        ("DELETE", f"/api/chats/{chat_id}", None),
        ("POST", f"/api/chats/{chat_id}/fork", {}),
        ("GET", f"/api/chats/{chat_id}/shares", None),
        ("POST", f"/api/chats/{chat_id}/shares", None),
        ("DELETE", f"/api/chats/{chat_id}/shares/{shared.json()['id']}", None),
        ("GET", f"/api/chats?projectId={project_id}", None),
        ("GET", f"/api/files/{file_id}", None),
        ("GET", f"/api/files/{file_id}/content", None),
        ("DELETE", f"/api/files/{file_id}", None),
        ("GET", f"/api/projects/{project_id}/members", None),
        ("GET", f"/api/files?projectId={project_id}", None),
        ("POST", "/api/chat/regenerate", {"chatId": chat_id}),
        ("PUT", f"/api/chats/{chat_id}/messages/{reply_id}/feedback", {"rating": "up"}),
        ("GET", f"/api/chats/{chat_id}/messages/{reply_id}/versions", None),
    ]:
        answered = await chat.client.request(method, url, json=body, headers=auth)
        assert answered.status_code == 404, (method, url, answered.status_code, answered.text)
        _problem(answered, 404)
    again = await chat.client.post(
        "/api/chat/start", json={"model": "dev/echo", "message": "hi", "chatId": chat_id},
        headers=auth,
    )  # fmt: skip
    _problem(again, 404)
    in_project = await chat.client.post(
        "/api/chat/start",
        json={"model": "dev/echo", "message": "hi", "projectId": project_id}, headers=auth,
    )  # fmt: skip
    _problem(in_project, 404)
    assert (await chat.client.get(f"/api/chats/search?q={word}", headers=auth)).json() == []

    read = await chat.client.get(f"/api/chats/{chat_id}", headers=owner["auth"])
    assert (read.status_code, read.json()["title"]) != (200, "Taken")
    assert read.status_code == 200
    assert (
        await chat.client.get(f"/api/files/{file_id}", headers=owner["auth"])
    ).status_code == 200
    public = await chat.client.get(shared.json()["url"])
    assert public.status_code == 200, public.text


async def test_a_demoted_editor_reads_but_no_longer_writes_and_a_promoted_viewer_writes(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    member = await chat.world.register("member")
    project_id = await team_project(chat, owner, member, "editor")
    started = await _started(chat, owner["auth"], projectId=project_id)
    chat_id = started["chatId"]
    members = f"/api/projects/{project_id}/members/{_uid(member)}"
    demoted = await chat.client.patch(members, json={"role": "viewer"}, headers=owner["auth"])
    assert (demoted.status_code, demoted.json()["role"]) == (200, "viewer")

    auth = member["auth"]
    assert (await chat.client.get(f"/api/chats/{chat_id}", headers=auth)).status_code == 200
    _problem(
        await chat.client.patch(f"/api/chats/{chat_id}", json={"title": "X"}, headers=auth), 403
    )
    _problem(await chat.client.post(f"/api/chats/{chat_id}/shares", headers=auth), 403)
    _problem(await chat.client.delete(f"/api/chats/{chat_id}", headers=auth), 403)
    written = await chat.client.post(
        "/api/chat/start",
        json={"model": "dev/echo", "message": "hi", "chatId": chat_id}, headers=auth,
    )  # fmt: skip
    _problem(written, 403)

    promoted = await chat.client.patch(members, json={"role": "editor"}, headers=owner["auth"])
    assert promoted.status_code == 200, promoted.text
    renamed = await chat.client.patch(f"/api/chats/{chat_id}", json={"title": "Y"}, headers=auth)
    assert (renamed.status_code, renamed.json()["title"]) == (200, "Y")


async def test_a_member_may_leave_on_their_own_but_not_remove_another(chat: Chat) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    viewer = await chat.world.register("viewer")
    project_id = await team_project(chat, owner, editor, "editor")
    members = f"/api/projects/{project_id}/members"
    added = await chat.client.post(
        members, json={"email": viewer["email"], "role": "viewer"}, headers=owner["auth"]
    )
    assert added.status_code == 201
    _problem(await chat.client.delete(f"{members}/{_uid(viewer)}", headers=editor["auth"]), 403)
    _problem(await chat.client.delete(f"{members}/{_uid(owner)}", headers=editor["auth"]), 403)
    left = await chat.client.delete(f"{members}/{_uid(viewer)}", headers=viewer["auth"])
    assert left.status_code == 204, left.text
    _problem(await chat.client.get(members, headers=viewer["auth"]), 404)
    listed = await chat.client.get(members, headers=editor["auth"])
    assert {m["userId"] for m in listed.json()} == {_uid(owner), _uid(editor)}
    projects = await chat.client.get("/api/projects", headers=viewer["auth"])
    assert project_id not in [p["id"] for p in projects.json()]


async def test_a_deleted_project_takes_its_chats_with_it_for_every_member(chat: Chat) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    started = await _started(chat, editor["auth"], projectId=project_id)
    shared = await chat.client.post(f"/api/chats/{started['chatId']}/shares", headers=owner["auth"])
    assert shared.status_code == 201, shared.text
    _problem(await chat.client.delete(f"/api/projects/{project_id}", headers=editor["auth"]), 403)
    deleted = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
    assert deleted.status_code == 204, deleted.text
    for person in (owner, editor):
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=person["auth"])
        _problem(read, 404)
        listed = await chat.client.get(f"/api/chats?projectId={project_id}", headers=person["auth"])
        _problem(listed, 404)
    _problem(await chat.client.get(shared.json()["url"]), 404)


# --- personal API keys ----------------------------------------------------------------------------
async def test_a_key_is_listed_without_its_secret_and_once_revoked_fails_on_api_and_v1(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    key = await _key(chat, alice["auth"])
    secret = key["secret"]
    assert secret.startswith("whk_")
    assert key["displayPrefix"] == secret[:10]
    for headers in (_bearer(secret), {"X-API-Key": secret}):
        assert (await chat.client.get("/api/auth/me", headers=headers)).status_code == 200
        assert (await chat.client.get("/v1/models", headers=headers)).status_code == 200
    listed = await chat.client.get("/api/keys", headers=alice["auth"])
    (row,) = listed.json()
    assert secret not in listed.text
    assert "secret" not in row
    assert "keyHash" not in row
    assert row["lastUsedAt"] is not None
    assert row["revokedAt"] is None

    revoked = await chat.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"])
    assert revoked.status_code == 204, revoked.text
    first = (await chat.client.get("/api/keys", headers=alice["auth"])).json()[0]["revokedAt"]
    assert first is not None
    again = await chat.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"])
    assert again.status_code == 204
    assert (await chat.client.get("/api/keys", headers=alice["auth"])).json()[0][
        "revokedAt"
    ] == first
    for headers in (_bearer(secret), {"X-API-Key": secret}):
        _problem(await chat.client.get("/api/auth/me", headers=headers), 401)
        v1 = await chat.client.get("/v1/models", headers=headers)
        assert v1.status_code == 401, v1.text
        assert "error" in v1.json()
        completion = await chat.client.post(
            "/v1/chat/completions", headers=headers,
            json={"model": "dev/echo", "messages": [{"role": "user", "content": "hi"}]},
        )  # fmt: skip
        assert completion.status_code == 401, completion.text
        start = await chat.client.post(
            "/api/chat/start", json={"model": "dev/echo", "message": "hi"}, headers=headers
        )
        _problem(start, 401)


async def test_a_key_cannot_mint_keys_nor_use_admin_routes_even_an_admins(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    admin_key = _bearer((await _key(chat, admin))["secret"])
    user_key = _bearer((await _key(chat, alice["auth"]))["secret"])
    for headers in (admin_key, user_key):
        _problem(await chat.client.post("/api/keys", json={"name": "x"}, headers=headers), 403)
    for method, url, body in [
        ("GET", "/api/admin/users", None),
        ("PATCH", f"/api/admin/users/{_uid(alice)}", {"plan": "pro"}),
        ("GET", f"/api/admin/users/{_uid(alice)}/usage", None),
        ("GET", "/api/admin/feedback", None),
    ]:
        _problem(await chat.client.request(method, url, json=body, headers=admin_key), 403)
        _problem(await chat.client.request(method, url, json=body, headers=user_key), 403)
        _problem(await chat.client.request(method, url, json=body, headers=alice["auth"]), 403)
    assert (await chat.client.get("/api/keys", headers=admin)).json()[0]["revokedAt"] is None
    assert len((await chat.client.get("/api/keys", headers=alice["auth"])).json()) == 1
    me = await chat.client.get("/api/auth/me", headers=alice["auth"])
    assert me.json()["plan"] == "free"


async def test_another_users_key_is_404_to_revoke_and_keeps_working(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    key = await _key(chat, alice["auth"])
    for key_id in (key["id"], str(uuid.uuid4())):
        _problem(await chat.client.delete(f"/api/keys/{key_id}", headers=bob["auth"]), 404)
    assert (await chat.client.get("/api/keys", headers=bob["auth"])).json() == []
    me = await chat.client.get("/api/auth/me", headers=_bearer(key["secret"]))
    assert (me.status_code, me.json()["email"]) == (200, alice["email"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "k" * 101}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"name": "ok", "expiresAt": "2030-01-01T00:00:00"}, "expiresAt"),
        ({"name": "ok", "expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"),
        ({"name": "ok", "expiresAt": "9999-12-31T23:59:59Z"}, "expiresAt"),
        ({"name": "ok", "expiresAt": "tomorrow"}, "expiresAt"),
        ({"name": "ok", "scopes": ["all"]}, None),
        ({}, "name"),
    ],
)
async def test_a_bad_key_request_is_a_4xx_naming_the_field_and_makes_no_key(
    chat: Chat, body: dict[str, Any], field: str | None
) -> None:
    alice = await chat.world.register("alice")
    made = await chat.client.post("/api/keys", json=body, headers=alice["auth"])
    assert 400 <= made.status_code < 500, made.text
    _problem(made, made.status_code, field)
    assert (await chat.client.get("/api/keys", headers=alice["auth"])).json() == []


async def test_an_expiring_key_works_until_then_and_keeps_its_expiry(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    made = await chat.client.post(
        "/api/keys", json={"name": "soon", "expiresAt": at.isoformat()}, headers=alice["auth"]
    )
    assert made.status_code == 201, made.text
    assert datetime.fromisoformat(made.json()["expiresAt"]) == at
    me = await chat.client.get("/api/auth/me", headers=_bearer(made.json()["secret"]))
    assert me.status_code == 200


# --- admins and disabled accounts -----------------------------------------------------------------
async def test_disabling_an_account_ends_its_tokens_keys_and_sessions_for_good(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    bob = await chat.world.register("bob")
    key = await _key(chat, bob["auth"])
    await _set_user(chat, admin, _uid(bob), disabled=True)

    for headers in (bob["auth"], _bearer(key["secret"]), {"X-API-Key": key["secret"]}):
        answered = await chat.client.get("/api/auth/me", headers=headers)
        assert answered.status_code in (401, 403), answered.text
        start = await chat.client.post(
            "/api/chat/start", json={"model": "dev/echo", "message": "hi"}, headers=headers
        )
        assert start.status_code in (401, 403), start.text
    v1 = await chat.client.get("/v1/models", headers=_bearer(key["secret"]))
    assert v1.status_code in (401, 403)
    assert "error" in v1.json()
    refreshed = await chat.client.post(
        "/api/auth/refresh", json={"refreshToken": bob["tokens"]["refreshToken"]}
    )
    assert refreshed.status_code in (401, 403), refreshed.text

    await _set_user(chat, admin, _uid(bob), disabled=False)
    login = await chat.client.post(
        "/api/auth/login", json={"email": bob["email"], "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    listed = await chat.client.get("/api/keys", headers=_bearer(login.json()["accessToken"]))
    assert [k["revokedAt"] is not None for k in listed.json()] == [True]
    assert (
        await chat.client.get("/api/auth/me", headers=_bearer(key["secret"]))
    ).status_code == 401
    _problem(await chat.client.get("/api/auth/me", headers=bob["auth"]), 401)  # its session ended
    refreshed = await chat.client.post(
        "/api/auth/refresh", json={"refreshToken": bob["tokens"]["refreshToken"]}
    )
    assert refreshed.status_code == 401, refreshed.text


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=-1", "offset=-1", "limit=abc", "offset=abc",
     f"limit={10**30}"],
)  # fmt: skip
async def test_odd_pages_of_the_user_list_are_a_4xx_naming_the_parameter(
    chat: Chat, query: str
) -> None:
    admin = await chat.world.create_admin()
    answered = await chat.client.get(f"/api/admin/users?{query}", headers=admin)
    assert 400 <= answered.status_code < 500, answered.text
    _problem(answered, answered.status_code, query.split("=")[0])


async def test_an_offset_too_large_for_the_database_is_a_4xx_naming_offset(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    answered = await chat.client.get(f"/api/admin/users?offset={2**63}", headers=admin)
    body = _problem(answered, answered.status_code, "offset")
    assert 400 <= body["status"] < 500


async def test_a_nul_in_the_user_search_is_handled_or_named(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    answered = await chat.client.get("/api/admin/users", params={"q": "a\x00b"}, headers=admin)
    if answered.status_code != 200:
        _problem(answered, answered.status_code, "q")


async def test_the_user_list_matches_wildcards_literally_and_survives_odd_queries(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    tag = uuid.uuid4().hex[:8]
    await chat.world.register(f"pct{tag}")
    for q in ("%", "_", "\\", f"pct{tag}%", "'; DROP TABLE users; --", "\U0001f600", "a" * 2000):
        listed = await chat.client.get("/api/admin/users", params={"q": q}, headers=admin)
        assert listed.status_code == 200, (q, listed.text)
        page = listed.json()
        # matched literally: every account listed has the query in its email or name (the
        # shared database holds other tests' accounts, so none may be listed or some)
        for user in page["items"]:
            found_in = f"{user['email']} {user.get('name') or ''}".lower()
            assert q.lower() in found_in, (q, user)
    found = await chat.client.get("/api/admin/users", params={"q": f"PCT{tag}"}, headers=admin)
    assert found.json()["total"] == 1


async def test_admin_changes_to_unknown_accounts_or_with_bad_values_write_nothing(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    bob = await chat.world.register("bob")
    _problem(
        await chat.client.patch(
            f"/api/admin/users/{uuid.uuid4()}", json={"plan": "pro"}, headers=admin
        ),
        404,
    )
    for body in (
        {"plan": "platinum"},
        {"role": "superuser"},
        {"disabled": "yes"},
        {"plan": "pro", "disabled": None},
        {"plan": "pro", "email": "x@example.com"},
    ):
        answered = await chat.client.patch(
            f"/api/admin/users/{_uid(bob)}", json=body, headers=admin
        )
        assert 400 <= answered.status_code < 500, (body, answered.text)
        _problem(answered, answered.status_code)
    me = (await chat.client.get("/api/auth/me", headers=bob["auth"])).json()
    assert (me["plan"], me["role"], me["email"]) == ("free", "user", bob["email"])


# --- presets --------------------------------------------------------------------------------------
async def test_a_preset_whose_model_the_plan_no_longer_includes_starts_nothing(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    await _set_user(chat, admin, _uid(alice), plan="pro")
    made = await chat.client.post(
        "/api/presets", json={"name": "Big", "model": "openai/gpt-4o"}, headers=auth
    )
    assert made.status_code == 201, made.text
    preset_id = made.json()["id"]
    existing = await _started(chat, auth)
    await _set_user(chat, admin, _uid(alice), plan="free")

    fresh = await chat.client.post(
        "/api/chat/start", json={"presetId": preset_id, "message": "hi"}, headers=auth
    )
    _problem(fresh, 403)
    into = await chat.client.post(
        "/api/chat/start",
        json={"presetId": preset_id, "message": "hi", "chatId": existing["chatId"]},
        headers=auth,
    )  # fmt: skip
    _problem(into, 403)
    regenerated = await chat.client.post(
        "/api/chat/regenerate",
        json={"chatId": existing["chatId"], "presetId": preset_id}, headers=auth,
    )  # fmt: skip
    _problem(regenerated, 403)
    chats = (await chat.client.get("/api/chats", headers=auth)).json()["items"]
    assert [c["id"] for c in chats] == [existing["chatId"]]
    read = (await chat.client.get(f"/api/chats/{existing['chatId']}", headers=auth)).json()
    assert [m["role"] for m in read["messages"]] == ["user", "assistant"]
    assert read["messages"][-1]["model"] == "dev/echo"

    overridden = await chat.client.post(
        "/api/chat/start",
        json={"presetId": preset_id, "model": "dev/echo", "message": "hi"}, headers=auth,
    )  # fmt: skip
    assert overridden.status_code == 201, overridden.text
    listed = await chat.client.get("/api/presets", headers=auth)
    assert [p["model"] for p in listed.json()] == ["openai/gpt-4o"]
    renamed = await chat.client.patch(
        f"/api/presets/{preset_id}", json={"name": "Renamed"}, headers=auth
    )
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Renamed")


async def test_a_preset_cannot_be_moved_to_a_model_above_the_plan_or_to_nonsense(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    made = await chat.client.post(
        "/api/presets", json={"name": "Echo", "model": "dev/echo"}, headers=auth
    )
    preset_id = made.json()["id"]
    url = f"/api/presets/{preset_id}"
    _problem(await chat.client.patch(url, json={"model": "openai/gpt-4o"}, headers=auth), 403)
    _problem(await chat.client.patch(url, json={"model": "nobody/nothing"}, headers=auth), 404)
    for body in ({"model": ""}, {"name": ""}, {"params": {"temperature": 9}}, {"colour": 1}):
        answered = await chat.client.patch(url, json=body, headers=auth)
        assert 400 <= answered.status_code < 500, (body, answered.text)
        _problem(answered, answered.status_code)
    (kept,) = (await chat.client.get("/api/presets", headers=auth)).json()
    assert (kept["name"], kept["model"], kept["params"]) == ("Echo", "dev/echo", {})


async def test_at_most_a_hundred_presets_and_the_hundred_and_first_writes_nothing(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    for i in range(100):
        made = await chat.client.post(
            "/api/presets", json={"name": f"P{i}", "model": "dev/echo"}, headers=auth
        )
        assert made.status_code == 201, made.text
    over = await chat.client.post(
        "/api/presets", json={"name": "P100", "model": "dev/echo"}, headers=auth
    )
    _problem(over, 422)
    listed = (await chat.client.get("/api/presets", headers=auth)).json()
    assert len(listed) == 100
    assert "P100" not in [p["name"] for p in listed]


# --- usage ----------------------------------------------------------------------------------------
def _figures(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return (row["requests"], row["cachedRequests"], row["promptTokens"], row["completionTokens"])


def _summed(rows: list[dict[str, Any]]) -> tuple[int, ...]:
    return tuple(sum(col) for col in zip(*(_figures(r) for r in rows), strict=True))


async def test_usage_totals_equal_the_sums_per_model_and_per_day_on_both_routes(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    for model in ("openai/gpt-4o-mini", "openai/gpt-4o-mini", "dev/echo"):
        started = await chat.start(auth, model=model, message=f"count me {uuid.uuid4()}")
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    key = await _key(chat, auth)
    completion = await chat.client.post(
        "/v1/chat/completions", headers=_bearer(key["secret"]),
        json={"model": "dev/echo", "messages": [{"role": "user", "content": str(uuid.uuid4())}]},
    )  # fmt: skip
    assert completion.status_code == 200, completion.text

    mine = await chat.client.get("/api/usage", headers=auth)
    assert mine.status_code == 200, mine.text
    usage = mine.json()
    total = usage["total"]
    assert total["requests"] == 4
    assert _figures(total) == _summed(usage["byModel"]) == _summed(usage["byDay"])
    assert total["costUsd"] == pytest.approx(sum(m["costUsd"] for m in usage["byModel"]))
    assert total["costUsd"] == pytest.approx(sum(d["costUsd"] for d in usage["byDay"]))
    assert total["costUsd"] > 0
    assert {m["model"]: m["requests"] for m in usage["byModel"]} == {
        "openai/gpt-4o-mini": 2,
        "dev/echo": 2,
    }
    assert usage["byModel"][0]["model"] == "openai/gpt-4o-mini"  # the most expensive first
    assert len(usage["byDay"]) == 30
    assert usage["byDay"][-1]["day"] == usage["to"]
    assert [d["day"] for d in usage["byDay"]] == sorted(d["day"] for d in usage["byDay"])

    today = usage["to"]
    one_day = await chat.client.get(f"/api/usage?from={today}&to={today}", headers=auth)
    assert one_day.json()["total"] == total
    as_admin = await chat.client.get(f"/api/admin/users/{_uid(alice)}/usage", headers=admin)
    assert as_admin.status_code == 200, as_admin.text
    assert as_admin.json() == usage
    with_key = await chat.client.get("/api/usage", headers=_bearer(key["secret"]))
    assert with_key.json() == usage
    before = (datetime.fromisoformat(today) - timedelta(days=1)).date().isoformat()
    earlier = await chat.client.get(f"/api/usage?to={before}", headers=auth)
    assert earlier.json()["total"]["requests"] == 0
    assert len(earlier.json()["byDay"]) == 30


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-02-30", "from"),
        ("to=2026-13-01", "to"),
        ("from=yesterday", "from"),
        ("from=2026-11-30&to=2026-11-01", "from"),
        ("from=2025-01-01&to=2026-01-02", "from"),
        ("from=2026-11-30T00:00:00Z", "from"),
        ("to=", "to"),
        ("from=0000-01-01", "from"),
        ("from=99999-01-01", "from"),
    ],
)
async def test_a_bad_usage_range_is_a_4xx_naming_it_on_both_routes(
    chat: Chat, query: str, field: str
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    for url, auth in (
        (f"/api/usage?{query}", alice["auth"]),
        (f"/api/admin/users/{_uid(alice)}/usage?{query}", admin),
        (f"/api/admin/feedback?{query}", admin),
    ):
        answered = await chat.client.get(url, headers=auth)
        assert 400 <= answered.status_code < 500, (url, answered.text)
        _problem(answered, answered.status_code, field)


async def test_a_usage_range_of_exactly_366_days_lists_every_one(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    answered = await chat.client.get(
        "/api/usage?from=2024-01-01&to=2024-12-31", headers=alice["auth"]
    )
    assert answered.status_code == 200, answered.text
    days = answered.json()["byDay"]
    assert (len(days), days[0]["day"], days[-1]["day"]) == (366, "2024-01-01", "2024-12-31")
    assert "2024-02-29" in [d["day"] for d in days]


async def test_another_accounts_usage_is_for_admins_and_an_unknown_one_is_404(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    _problem(
        await chat.client.get(f"/api/admin/users/{_uid(bob)}/usage", headers=alice["auth"]), 403
    )
    _problem(
        await chat.client.get(f"/api/admin/users/{_uid(alice)}/usage", headers=alice["auth"]),
        403,
    )
    _problem(await chat.client.get(f"/api/admin/users/{uuid.uuid4()}/usage", headers=admin), 404)
    not_an_id = await chat.client.get("/api/admin/users/not-an-id/usage", headers=admin)
    assert 400 <= not_an_id.status_code < 500, not_an_id.text


# --- chat list pagination and search --------------------------------------------------------------
async def test_paging_through_the_chat_list_neither_repeats_nor_skips_a_chat(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    made = [(await _started(chat, auth))["chatId"] for _ in range(5)]
    whole = await chat.client.get("/api/chats?limit=100", headers=auth)
    assert [c["id"] for c in whole.json()["items"]] == made[::-1]
    assert whole.json()["nextCursor"] is None

    seen: list[str] = []
    url = "/api/chats?limit=2"
    for _ in range(5):
        page = (await chat.client.get(url, headers=auth)).json()
        seen += [c["id"] for c in page["items"]]
        if page["nextCursor"] is None:
            break
        url = f"/api/chats?limit=2&cursor={page['nextCursor']}"
    assert seen == made[::-1]
    exact = (await chat.client.get("/api/chats?limit=5", headers=auth)).json()
    assert exact["nextCursor"] is None
    assert len(exact["items"]) == 5


async def test_a_cursor_from_a_page_still_works_after_its_chat_is_deleted(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    made = [(await _started(chat, auth))["chatId"] for _ in range(4)]
    first = (await chat.client.get("/api/chats?limit=2", headers=auth)).json()
    assert [c["id"] for c in first["items"]] == made[:1:-1]
    deleted = await chat.client.delete(f"/api/chats/{made[2]}", headers=auth)
    assert deleted.status_code == 204
    rest = await chat.client.get(f"/api/chats?limit=2&cursor={first['nextCursor']}", headers=auth)
    assert [c["id"] for c in rest.json()["items"]] == made[1::-1]


@pytest.mark.parametrize(
    "cursor",
    ["abc", "", "====", "%E2%82%AC", "A" * 5000,
     "__________________________________", "%00", "AAAAAAAAAAA%3D"],
)  # fmt: skip
async def test_a_cursor_the_service_did_not_issue_is_a_4xx_naming_the_cursor(
    chat: Chat, cursor: str
) -> None:
    alice = await chat.world.register("alice")
    await _started(chat, alice["auth"])
    answered = await chat.client.get(f"/api/chats?cursor={cursor}", headers=alice["auth"])
    assert 400 <= answered.status_code < 500, answered.text
    _problem(answered, answered.status_code, "cursor")


async def test_a_tampered_cursor_is_refused_and_one_from_another_project_reveals_nothing(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    for _ in range(3):
        await _started(chat, alice["auth"])
    page = (await chat.client.get("/api/chats?limit=1", headers=alice["auth"])).json()
    cursor = page["nextCursor"]
    flipped = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    answered = await chat.client.get(f"/api/chats?cursor={flipped}", headers=alice["auth"])
    assert answered.status_code in (200, 422), answered.text
    if answered.status_code == 422:
        _problem(answered, 422, "cursor")
    theirs = await chat.client.get(f"/api/chats?cursor={cursor}", headers=bob["auth"])
    assert (theirs.status_code, theirs.json()["items"]) == (200, [])


ODD_QUERIES = [
    '"', '"unclosed phrase', "-", "--", "-word", "a OR b", "OR", "or or or", "!", "&|!():*",
    "'", "\\", "a:*", "<script>alert(1)</script>", "%", "_", "\U0001f600", "\u200b", "日本語",
    "x" * 500, '"' * 500, "a\x00b", "\x00", "\u0301", "\ud7ff", "NULL", "'; --",
]  # fmt: skip


async def test_odd_search_queries_answer_a_list_never_a_500(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    await _started(chat, alice["auth"])
    for q in ODD_QUERIES:
        answered = await chat.client.get(
            "/api/chats/search", params={"q": q}, headers=alice["auth"]
        )
        assert answered.status_code == 200, (q, answered.status_code, answered.text)
        assert isinstance(answered.json(), list)


@pytest.mark.parametrize(
    ("query", "field"),
    [("q=" + "x" * 501, "q"), ("q=hi&limit=0", "limit"), ("q=hi&limit=101", "limit"),
     ("q=hi&limit=abc", "limit")],
)  # fmt: skip
async def test_a_bad_search_is_a_4xx_naming_what_was_wrong(
    chat: Chat, query: str, field: str
) -> None:
    alice = await chat.world.register("alice")
    answered = await chat.client.get(f"/api/chats/search?{query}", headers=alice["auth"])
    assert 400 <= answered.status_code < 500, answered.text
    _problem(answered, answered.status_code, field)


async def test_search_finds_phrases_and_unicode_words_only_in_readable_chats(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    tag = uuid.uuid4().hex[:8]
    started = await chat.start(
        alice["auth"], model="dev/echo", message=f"grüße aus Zürich{tag} und 東京{tag}"
    )
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    for q in (f"Zürich{tag}", f'"aus Zürich{tag}"', f"東京{tag}", f"zürich{tag} -nothing"):
        found = await chat.client.get("/api/chats/search", params={"q": q}, headers=alice["auth"])
        assert [h["chatId"] for h in found.json()] == [started["chatId"]], q
        hidden = await chat.client.get("/api/chats/search", params={"q": q}, headers=bob["auth"])
        assert hidden.json() == [], q
    excluded = await chat.client.get(
        "/api/chats/search", params={"q": f"Zürich{tag} -grüße"}, headers=alice["auth"]
    )
    assert excluded.json() == []


@pytest.mark.parametrize(
    "q", ["-" * 33, "- " * 50, "-" * 500, "-(" * 40, "hi " + "-" * 41, "-" * 40 + " hi"]
)
async def test_a_search_with_a_long_run_of_negations_answers_a_list_not_a_500(
    chat: Chat, q: str
) -> None:
    alice = await chat.world.register("alice")
    await _started(chat, alice["auth"])
    answered = await chat.client.get("/api/chats/search", params={"q": q}, headers=alice["auth"])
    assert answered.status_code == 200, answered.text
    assert isinstance(answered.json(), list)


# --- a removed member and live replies ------------------------------------------------------------
async def test_a_removed_starter_can_neither_stream_nor_stop_their_own_session_any_more(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    started = await _started(chat, editor["auth"], projectId=project_id)
    session_id = started["sessionId"]
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{_uid(editor)}", headers=owner["auth"]
    )
    assert removed.status_code == 204
    stream = await chat.client.get(
        f"/api/chat/stream?sessionId={session_id}", headers=editor["auth"]
    )
    _problem(stream, 404)
    stop = await chat.client.post(f"/api/chat/sessions/{session_id}/stop", headers=editor["auth"])
    _problem(stop, 404)
    assert (await chat.events(session_id, headers=owner["auth"]))[-1][1] == "done"


async def test_a_reader_pass_read_before_removal_admits_nobody_after_it(chat: Chat) -> None:
    owner = await chat.world.register("owner")
    viewer = await chat.world.register("viewer")
    project_id = await team_project(chat, owner, viewer, "viewer")
    go = asyncio.Event()
    chat.provider.script(
        Reply(chunks=openai_stream(("Hello", ", ", "world")), gate=go, gate_after=2)
    )
    started = await chat.start(
        owner["auth"], model="openai/gpt-4o-mini", message=f"live {uuid.uuid4()}",
        projectId=project_id,
    )  # fmt: skip
    try:
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=viewer["auth"])
        reader_pass = read.json()["messages"][-1]["sessionId"]
        assert reader_pass
        assert reader_pass != started["sessionId"]
        removed = await chat.client.delete(
            f"/api/projects/{project_id}/members/{_uid(viewer)}", headers=owner["auth"]
        )
        assert removed.status_code == 204
        for session in (reader_pass, started["sessionId"]):
            stream = await chat.client.get(
                f"/api/chat/stream?sessionId={session}", headers=viewer["auth"]
            )
            _problem(stream, 404)
            stop = await chat.client.post(
                f"/api/chat/sessions/{session}/stop", headers=viewer["auth"]
            )
            _problem(stop, 404)
    finally:
        go.set()
    events = await chat.events(started["sessionId"], headers=owner["auth"])
    assert events[-1][1] == "done", events[-1]


async def test_a_demoted_admin_loses_the_admin_routes_on_the_next_request(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    bob = await chat.world.register("bob")
    await _set_user(chat, admin, _uid(bob), role="admin")
    assert (await chat.client.get("/api/admin/users", headers=bob["auth"])).status_code == 200
    await _set_user(chat, admin, _uid(bob), role="user")
    _problem(await chat.client.get("/api/admin/users", headers=bob["auth"]), 403)
    promote = await chat.client.patch(
        f"/api/admin/users/{_uid(bob)}", json={"role": "admin"}, headers=bob["auth"]
    )
    _problem(promote, 403)
    me = (await chat.client.get("/api/auth/me", headers=bob["auth"])).json()
    assert me["role"] == "user"


async def test_cached_replies_are_counted_as_requests_and_as_cached(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    prompt = f"same question {uuid.uuid4()}"
    finals = []
    for _ in range(2):
        started = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
        finals.append((await chat.events(started["sessionId"]))[-1])
    assert [f[1] for f in finals] == ["done", "done"]
    assert [f[2]["cached"] for f in finals] == [False, True]
    usage = (await chat.client.get("/api/usage", headers=alice["auth"])).json()
    assert (usage["total"]["requests"], usage["total"]["cachedRequests"]) == (2, 1)
    (model,) = usage["byModel"]
    assert (model["requests"], model["cachedRequests"]) == (2, 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": ""}, "name"), ({"name": "n" * 121}, "name"), ({"name": "a\x00b"}, "name"),
     ({"name": 5}, "name"), ({"name": "ok", "owner": "x"}, None), ({}, "name")],
)  # fmt: skip
async def test_a_bad_project_name_is_a_4xx_naming_it_and_creates_or_renames_nothing(
    chat: Chat, body: dict[str, Any], field: str | None
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    project_id = await team_project(chat, alice, bob, "viewer")
    made = await chat.client.post("/api/projects", json=body, headers=alice["auth"])
    _problem(made, made.status_code, field)
    assert 400 <= made.status_code < 500
    if body:
        renamed = await chat.client.patch(
            f"/api/projects/{project_id}", json=body, headers=alice["auth"]
        )
        assert 400 <= renamed.status_code < 500, renamed.text
        _problem(renamed, renamed.status_code, field)
    projects = (await chat.client.get("/api/projects", headers=alice["auth"])).json()
    assert [p["name"] for p in projects if not p["personal"]] == ["Team"]
    _problem(
        await chat.client.patch(f"/api/projects/{project_id}", json={}, headers=bob["auth"]), 403
    )


async def test_another_users_project_id_in_the_chat_list_is_404_and_a_bad_one_is_a_4xx(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    await _started(chat, alice["auth"])
    alices = str(personal_project_id(uuid.UUID(_uid(alice))))
    _problem(await chat.client.get(f"/api/chats?projectId={alices}", headers=bob["auth"]), 404)
    _problem(
        await chat.client.get(f"/api/chats?projectId={uuid.uuid4()}", headers=bob["auth"]), 404
    )
    bad = await chat.client.get("/api/chats?projectId=mine", headers=bob["auth"])
    assert 400 <= bad.status_code < 500, bad.text
    _problem(bad, bad.status_code, "projectId")
    for query in ("limit=0", "limit=101", "limit=x"):
        answered = await chat.client.get(f"/api/chats?{query}", headers=alice["auth"])
        assert 400 <= answered.status_code < 500, answered.text
        _problem(answered, answered.status_code, "limit")


async def test_a_new_account_has_its_personal_project_from_the_start(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    projects = (await chat.client.get("/api/projects", headers=alice["auth"])).json()
    personal = str(personal_project_id(uuid.UUID(_uid(alice))))
    assert [(p["id"], p["personal"], p["ownerId"]) for p in projects] == [
        (personal, True, _uid(alice))
    ]
    read = await chat.client.get(f"/api/projects/{personal}", headers=alice["auth"])
    assert read.status_code == 200, read.text
    members = await chat.client.get(f"/api/projects/{personal}/members", headers=alice["auth"])
    assert [(m["userId"], m["role"]) for m in members.json()] == [(_uid(alice), "owner")]


async def test_demoting_the_named_owner_hands_the_project_to_the_remaining_owner(
    chat: Chat,
) -> None:
    first = await chat.world.register("first")
    second = await chat.world.register("second")
    project_id = await team_project(chat, first, second, "owner")
    demoted = await chat.client.patch(
        f"/api/projects/{project_id}/members/{_uid(first)}", json={"role": "viewer"},
        headers=first["auth"],
    )  # fmt: skip
    assert (demoted.status_code, demoted.json()["role"]) == (200, "viewer")
    project = (await chat.client.get(f"/api/projects/{project_id}", headers=first["auth"])).json()
    assert project["ownerId"] == _uid(second)
    _problem(
        await chat.client.patch(
            f"/api/projects/{project_id}", json={"name": "Back"}, headers=first["auth"]
        ),
        403,
    )


async def test_paging_the_user_list_past_its_end_keeps_the_total_and_a_disabled_users_usage_reads(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    tag = uuid.uuid4().hex[:8]
    people = [await chat.world.register(f"page{tag}") for _ in range(3)]
    q = f"page{tag}"
    pages = [
        (await chat.client.get(f"/api/admin/users?q={q}&limit=2&offset={o}", headers=admin)).json()
        for o in (0, 2, 4)
    ]
    assert [p["total"] for p in pages] == [3, 3, 3]
    assert [len(p["items"]) for p in pages] == [2, 1, 0]
    assert [u["id"] for p in pages for u in p["items"]] == [_uid(p) for p in people]
    await _set_user(chat, admin, _uid(people[0]), disabled=True)
    usage = await chat.client.get(f"/api/admin/users/{_uid(people[0])}/usage", headers=admin)
    assert usage.status_code == 200, usage.text
    listed = (await chat.client.get(f"/api/admin/users?q={q}", headers=admin)).json()
    assert [u["disabled"] for u in listed["items"]] == [True, False, False]


async def test_writing_into_a_project_needs_write_rights_there_and_a_strangers_is_404(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    viewer = await chat.world.register("viewer")
    stranger = await chat.world.register("stranger")
    project_id = await team_project(chat, owner, viewer, "viewer")
    mine = await _started(chat, viewer["auth"])
    theirs = await _started(chat, owner["auth"], projectId=project_id)
    for person, status in ((viewer, 403), (stranger, 404)):
        auth = person["auth"]
        imported = await chat.client.post(
            "/api/chats/import",
            json={"format": "chatgpt", "conversations": [lisbon()], "projectId": project_id},
            headers=auth,
        )  # fmt: skip
        _problem(imported, status)
        uploaded = await chat.client.post(
            f"/api/files/upload?projectId={project_id}",
            content=form(TEXT, "notes.txt"), headers={**auth, **multipart()},
        )  # fmt: skip
        _problem(uploaded, status)
        own = mine["chatId"] if person is viewer else (await _started(chat, auth))["chatId"]
        forked = await chat.client.post(
            f"/api/chats/{own}/fork", json={"projectId": project_id}, headers=auth
        )
        _problem(forked, status)
    # a viewer may fork what they read into their own project, not into the team's
    forked = await chat.client.post(
        f"/api/chats/{theirs['chatId']}/fork", json={}, headers=viewer["auth"]
    )
    assert forked.status_code == 201, forked.text
    stranger_fork = await chat.client.post(
        f"/api/chats/{theirs['chatId']}/fork", json={}, headers=stranger["auth"]
    )
    _problem(stranger_fork, 404)
    listed = await chat.client.get(f"/api/chats?projectId={project_id}", headers=owner["auth"])
    assert [c["id"] for c in listed.json()["items"]] == [theirs["chatId"]]
    files = await chat.client.get(f"/api/files?projectId={project_id}", headers=owner["auth"])
    assert (files.status_code, files.json()["items"]) == (200, [])


async def test_two_owners_removing_each_other_at_once_leave_exactly_one_owner(
    chat: Chat,
) -> None:
    for leave in (False, True):
        first = await chat.world.register("first")
        second = await chat.world.register("second")
        project_id = await team_project(chat, first, second, "owner")
        members = f"/api/projects/{project_id}/members"
        answers = await asyncio.gather(
            chat.client.delete(
                f"{members}/{_uid(first if leave else second)}", headers=first["auth"]
            ),
            chat.client.delete(
                f"{members}/{_uid(second if leave else first)}", headers=second["auth"]
            ),
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses in ([204, 404], [204, 409]), [a.text for a in answers]
        firsts_done = answers[0].status_code == 204  # first's own request went through
        survivor = (
            (second if firsts_done else first) if leave else (first if firsts_done else second)
        )
        listed = await chat.client.get(members, headers=survivor["auth"])
        assert [(m["userId"], m["role"]) for m in listed.json()] == [(_uid(survivor), "owner")]
        project = await chat.client.get(f"/api/projects/{project_id}", headers=survivor["auth"])
        assert project.json()["ownerId"] == _uid(survivor)


@pytest.mark.parametrize(
    "url",
    [f"/api/files?limit={10**30}", "/api/files?limit=0", "/api/files?limit=501",
     f"/api/chats?limit={10**30}", f"/api/chats/search?q=a&limit={10**30}"],
)  # fmt: skip
async def test_limits_out_of_range_are_a_4xx_naming_limit(chat: Chat, url: str) -> None:
    alice = await chat.world.register("alice")
    answered = await chat.client.get(url, headers=alice["auth"])
    assert 400 <= answered.status_code < 500, answered.text
    _problem(answered, answered.status_code, "limit")


async def test_an_expired_key_fails_on_api_and_v1_and_stays_listed(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    at = datetime.now(UTC) + timedelta(seconds=2)
    made = await chat.client.post(
        "/api/keys", json={"name": "brief", "expiresAt": at.isoformat()}, headers=alice["auth"]
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert (await chat.client.get("/api/auth/me", headers=_bearer(secret))).status_code == 200
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.3)
    _problem(await chat.client.get("/api/auth/me", headers=_bearer(secret)), 401)
    v1 = await chat.client.get("/v1/models", headers={"X-API-Key": secret})
    assert v1.status_code == 401, v1.text
    assert "error" in v1.json()
    (row,) = (await chat.client.get("/api/keys", headers=alice["auth"])).json()
    assert (row["id"], row["revokedAt"]) == (made.json()["id"], None)


async def test_in_a_shared_chat_each_member_is_charged_only_for_their_own_replies(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    first = await chat.start(
        owner["auth"], model="openai/gpt-4o-mini", message=f"one {uuid.uuid4()}",
        projectId=project_id,
    )  # fmt: skip
    assert (await chat.events(first["sessionId"]))[-1][1] == "done"
    for _ in range(2):
        more = await chat.start(
            editor["auth"], model="openai/gpt-4o-mini", message=f"two {uuid.uuid4()}",
            chatId=first["chatId"],
        )  # fmt: skip
        assert (await chat.events(more["sessionId"]))[-1][1] == "done"
    owners = (await chat.client.get("/api/usage", headers=owner["auth"])).json()["total"]
    editors = (await chat.client.get("/api/usage", headers=editor["auth"])).json()["total"]
    assert (owners["requests"], editors["requests"]) == (1, 2)
    assert editors["costUsd"] > owners["costUsd"] > 0


async def _live_team_reply(
    chat: Chat, go: asyncio.Event
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str]:
    """A team (owner, viewer, an editor ``other``, a ``stranger``), a reply of the owner's held
    mid-stream until ``go``, and the reader pass the viewer read for it."""
    people = {n: await chat.world.register(n) for n in ("owner", "viewer", "other", "stranger")}
    project_id = await team_project(chat, people["owner"], people["viewer"], "viewer")
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": people["other"]["email"], "role": "editor"},
        headers=people["owner"]["auth"],
    )
    assert added.status_code == 201
    chat.provider.script(
        Reply(chunks=openai_stream(("Hello", ", ", "world")), gate=go, gate_after=2)
    )
    started = await chat.start(
        people["owner"]["auth"], model="openai/gpt-4o-mini", message=f"live {uuid.uuid4()}",
        projectId=project_id,
    )  # fmt: skip
    read = await chat.client.get(
        f"/api/chats/{started['chatId']}", headers=people["viewer"]["auth"]
    )
    reader_pass: str = read.json()["messages"][-1]["sessionId"]
    assert reader_pass
    return people, started, reader_pass


async def test_a_reader_pass_streams_only_to_the_member_who_read_it(chat: Chat) -> None:
    go = asyncio.Event()
    people, _, reader_pass = await _live_team_reply(chat, go)
    try:
        for name in ("other", "stranger"):
            stream = await chat.client.get(
                f"/api/chat/stream?sessionId={reader_pass}", headers=people[name]["auth"]
            )
            _problem(stream, 404)
        stop = await chat.client.post(
            f"/api/chat/sessions/{reader_pass}/stop", headers=people["stranger"]["auth"]
        )
        _problem(stop, 404)
    finally:
        go.set()
    events = await chat.events(reader_pass, headers=people["viewer"]["auth"])
    assert events[-1][1] == "done", events[-1]
    assert "".join(d["delta"] for _, n, d in events if n == "token") == "Hello, world"


async def test_another_members_reader_pass_does_not_stop_the_reply(chat: Chat) -> None:
    go = asyncio.Event()
    people, started, reader_pass = await _live_team_reply(chat, go)
    try:
        stop = await chat.client.post(
            f"/api/chat/sessions/{reader_pass}/stop", headers=people["other"]["auth"]
        )
        _problem(stop, 404)
    finally:
        go.set()
    events = await chat.events(started["sessionId"], headers=people["owner"]["auth"])
    assert events[-1][1] == "done", events[-1]
    assert "".join(d["delta"] for _, n, d in events if n == "token") == "Hello, world"
