"""Hunt S21 of projects and their members over time, and of what deletion leaves behind, end to
end through the real app (Postgres, Redis, S3): a member demoted or removed while things are
under way, the last owner, the personal project, adding members by email (case, twice at once,
oneself), and deleting a project with files, running replies and forks elsewhere."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_files import TEXT, form, multipart
from tests.support.fake_providers import Reply, openai_stream
from tests.support.resolve import resolved
from tests.unit.test_chatgpt_export import lisbon
from whalli.domain.model.errors import BlobNotFound
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

PROBLEM = "application/problem+json"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _uid(person: dict[str, Any]) -> str:
    user_id: str = person["user"]["id"]
    return user_id


def _tokens(events: list[tuple[str | None, str, dict[str, Any]]]) -> str:
    return "".join(d["delta"] for _, n, d in events if n == "token")


async def _done(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    """A dev/echo reply started and read to its end."""
    started = await chat.start(auth, model="dev/echo", message=f"hi {uuid.uuid4()}", **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started


async def _upload(chat: Chat, auth: dict[str, str], project_id: str | None) -> Any:
    query = "" if project_id is None else f"?projectId={project_id}"
    return await chat.client.post(
        f"/api/files/upload{query}", content=form(TEXT, "notes.txt"),
        headers={**auth, **multipart()},
    )  # fmt: skip


async def _extract(chat: Chat, file_id: str) -> None:
    """What the worker does with the file's job, run here (no worker in these tests)."""
    handler = await resolved(chat.world.container.services.extract_attachment())
    await handler.execute(ExtractAttachment(attachment_id=uuid.UUID(file_id)))


async def _blob_exists(chat: Chat, key: str) -> bool:
    blobs = await resolved(chat.world.container.adapters.blob_storage())
    try:
        await blobs.stat(key)
    except BlobNotFound:
        return False
    return True


async def _members(chat: Chat, project_id: str, auth: dict[str, str]) -> dict[str, str]:
    listed = await chat.client.get(f"/api/projects/{project_id}/members", headers=auth)
    assert listed.status_code == 200, listed.text
    return {m["userId"]: m["role"] for m in listed.json()}


async def _read_open_stream(
    chat: Chat, session_id: str, auth: dict[str, str], first_token: asyncio.Event
) -> list[tuple[str | None, str, dict[str, Any]]]:
    """The reply's events on one connection until done/error, ``first_token`` set on the first."""
    found: list[tuple[str | None, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    url = f"/api/chat/stream?sessionId={session_id}"
    async with chat.client.stream("GET", url, headers=auth) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    name = fields.get("event", "message")
                    found.append((fields.get("id"), name, json.loads(fields["data"])))
                    if name == "token":
                        first_token.set()
                    if name in ("done", "error"):
                        break
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
    return found


# --- deletion cascades ----------------------------------------------------------------------------
async def test_s21e_deleting_a_project_removes_its_files_objects_from_storage(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    keys = []
    for person in (owner, editor):
        uploaded = await _upload(chat, person["auth"], project_id)
        assert uploaded.status_code == 201, uploaded.text
        keys.append(f"{project_id}/{uploaded.json()['id']}")
    assert all([await _blob_exists(chat, key) for key in keys])

    deleted = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
    assert deleted.status_code == 204, deleted.text

    assert [await _blob_exists(chat, key) for key in keys] == [False, False]


async def test_s21e_a_deleted_files_object_goes_with_it_and_a_late_extraction_is_harmless(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    uploaded = await _upload(chat, editor["auth"], project_id)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    key = f"{project_id}/{file_id}"
    removed = await chat.client.delete(f"/api/files/{file_id}", headers=owner["auth"])
    assert removed.status_code == 204, removed.text
    assert not await _blob_exists(chat, key)
    await _extract(chat, file_id)  # the job queued at the upload, delivered late
    _problem(await chat.client.get(f"/api/files/{file_id}", headers=owner["auth"]), 404)


async def test_s21e_an_extraction_queued_before_its_project_was_deleted_does_nothing(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    uploaded = await _upload(chat, editor["auth"], project_id)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    deleted = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
    assert deleted.status_code == 204, deleted.text
    await _extract(chat, file_id)
    for person in (owner, editor):
        _problem(await chat.client.get(f"/api/files/{file_id}", headers=person["auth"]), 404)
        _problem(
            await chat.client.get(f"/api/files/{file_id}/content", headers=person["auth"]), 404
        )
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        rows = await uow.attachments.list_for_project(uuid.UUID(project_id))
    assert rows == []


async def test_s21e_a_reply_streaming_when_its_project_is_deleted_ends_and_is_still_counted(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    go = asyncio.Event()
    chat.provider.script(
        Reply(chunks=openai_stream(("first", " rest"), usage=(9, 2)), gate=go, gate_after=2)
    )
    before = datetime.now(UTC)
    started = await chat.start(
        editor["auth"], model="openai/gpt-4o-mini", message=f"doomed {uuid.uuid4()}",
        projectId=project_id,
    )  # fmt: skip
    first_token = asyncio.Event()
    reading = asyncio.create_task(
        _read_open_stream(chat, started["sessionId"], editor["auth"], first_token)
    )
    try:
        await asyncio.wait_for(first_token.wait(), 10)  # connected, the reply under way
        deleted = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
        assert deleted.status_code == 204, deleted.text
    finally:
        go.set()
    events = await asyncio.wait_for(reading, 10)
    assert _tokens(events) == "first rest"
    assert events[-1][1] == "error", events[-1]
    assert events[-1][2]["code"] == "chat_deleted"
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        usage = await uow.usage.totals(uuid.UUID(_uid(editor)), since=before)
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 9, 2)
    # the project is gone: a reconnect is refused like any session one may no longer read
    again = await chat.client.get(
        f"/api/chat/stream?sessionId={started['sessionId']}", headers=editor["auth"]
    )
    _problem(again, 404)
    bare = await chat.client.get(f"/api/chat/stream?sessionId={started['sessionId']}")
    _problem(bare, 404)  # the id alone (a browser's EventSource) admits nobody either
    stop = await chat.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=editor["auth"]
    )
    _problem(stop, 404)


async def test_s21e_a_fork_elsewhere_outlives_its_projects_deletion_without_dangling_files(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    viewer = await chat.world.register("viewer")
    project_id = await team_project(chat, owner, viewer, "viewer")
    uploaded = await _upload(chat, owner["auth"], project_id)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    await _extract(chat, file_id)
    started = await chat.start(
        owner["auth"], model="dev/echo", message=f"read it {uuid.uuid4()}",
        projectId=project_id, attachmentIds=[file_id],
    )  # fmt: skip
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    source = (
        await chat.client.get(f"/api/chats/{started['chatId']}", headers=owner["auth"])
    ).json()
    assert source["messages"][0]["attachmentIds"] == [file_id]
    forked = await chat.client.post(f"/api/chats/{started['chatId']}/fork", headers=viewer["auth"])
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["id"]
    same = await chat.client.post(f"/api/chats/{started['chatId']}/fork", headers=owner["auth"])
    assert same.status_code == 201, same.text  # into the owner's personal project

    deleted = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
    assert deleted.status_code == 204, deleted.text

    for person, chat_id in ((viewer, fork_id), (owner, same.json()["id"])):
        read = await chat.client.get(f"/api/chats/{chat_id}", headers=person["auth"])
        assert read.status_code == 200, read.text
        got = read.json()
        assert [m["content"] for m in got["messages"]] == [m["content"] for m in source["messages"]]
        assert [m["attachmentIds"] for m in got["messages"]] == [[], []]
        exported = await chat.client.get(f"/api/chats/{chat_id}/export", headers=person["auth"])
        assert exported.status_code == 200, exported.text
        more = await chat.client.post(
            "/api/chat/start", json={"model": "dev/echo", "message": "on", "chatId": chat_id},
            headers=person["auth"],
        )  # fmt: skip
        assert more.status_code == 201, more.text
        assert (await chat.events(more.json()["sessionId"]))[-1][1] == "done"


async def test_s21e_deleting_a_chat_takes_its_share_links_and_reply_versions_with_it(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    started = await _done(chat, editor["auth"], projectId=project_id)
    chat_id = started["chatId"]
    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=editor["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    assert (await chat.events(regenerated.json()["sessionId"]))[-1][1] == "done"
    shared = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=editor["auth"])
    assert shared.status_code == 201, shared.text
    read = await chat.client.get(f"/api/chats/{chat_id}", headers=editor["auth"])
    reply_id = read.json()["messages"][-1]["id"]
    versions = await chat.client.get(
        f"/api/chats/{chat_id}/messages/{reply_id}/versions", headers=editor["auth"]
    )
    assert (versions.status_code, len(versions.json()["items"])) == (200, 1), versions.text
    deleted = await chat.client.delete(f"/api/chats/{chat_id}", headers=owner["auth"])
    assert deleted.status_code == 204, deleted.text
    _problem(await chat.client.get(shared.json()["url"]), 404)
    versions = await chat.client.get(
        f"/api/chats/{chat_id}/messages/{reply_id}/versions", headers=editor["auth"]
    )
    _problem(versions, 404)
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        left = await uow.chats.list_messages(uuid.UUID(chat_id))
    assert left == []


# --- a demoted or removed member ------------------------------------------------------------------
async def test_s21e_a_demoted_viewer_can_write_nothing_in_the_project_but_still_reads_and_forks(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    member = await chat.world.register("member")
    project_id = await team_project(chat, owner, member, "editor")
    started = await _done(chat, member["auth"], projectId=project_id)
    chat_id = started["chatId"]
    uploaded = await _upload(chat, member["auth"], project_id)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    shared = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=member["auth"])
    assert shared.status_code == 201, shared.text
    first_reply = (await chat.client.get(f"/api/chats/{chat_id}", headers=member["auth"])).json()[
        "messages"
    ][-1]["id"]
    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=member["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    assert (await chat.events(regenerated.json()["sessionId"]))[-1][1] == "done"
    reply_id = (await chat.client.get(f"/api/chats/{chat_id}", headers=member["auth"])).json()[
        "messages"
    ][-1]["id"]
    assert reply_id != first_reply
    demoted = await chat.client.patch(
        f"/api/projects/{project_id}/members/{_uid(member)}", json={"role": "viewer"},
        headers=owner["auth"],
    )  # fmt: skip
    assert demoted.status_code == 200, demoted.text

    auth = member["auth"]
    for method, url, body in [
        ("POST", "/api/chat/regenerate", {"chatId": chat_id}),
        ("POST", "/api/chat/start", {"model": "dev/echo", "message": "x", "chatId": chat_id}),
        ("POST", "/api/chat/start", {"model": "dev/echo", "message": "x", "projectId": project_id}),
        ("PATCH", f"/api/chats/{chat_id}", {"title": "Taken"}),
        ("PATCH", f"/api/chats/{chat_id}", {"pinned": True}),
        ("PATCH", f"/api/chats/{chat_id}", {"systemPrompt": "be rude"}),
        ("DELETE", f"/api/chats/{chat_id}", None),
        ("POST", f"/api/chats/{chat_id}/shares", None),
        ("POST", f"/api/chats/{chat_id}/fork", {"projectId": project_id}),
        ("POST", f"/api/chats/{chat_id}/messages/{first_reply}/restore", None),
        ("DELETE", f"/api/files/{file_id}", None),
        ("PATCH", f"/api/projects/{project_id}", {"name": "Mine"}),
        ("DELETE", f"/api/projects/{project_id}", None),
        ("POST", f"/api/projects/{project_id}/members", {"email": member["email"]}),
        ("POST", "/api/chats/import", {"format": "chatgpt", "conversations": [lisbon()],
                                       "projectId": project_id}),
    ]:  # fmt: skip
        answered = await chat.client.request(method, url, json=body, headers=auth)
        assert answered.status_code == 403, (method, url, answered.status_code, answered.text)
    _problem(await _upload(chat, auth, project_id), 403)

    read = (await chat.client.get(f"/api/chats/{chat_id}", headers=owner["auth"])).json()
    assert read["title"] != "Taken"
    assert read["messages"][-1]["id"] == reply_id
    assert read.get("systemPrompt") is None
    assert (await chat.client.get(shared.json()["url"])).status_code == 200
    files = await chat.client.get(f"/api/files?projectId={project_id}", headers=auth)
    assert [f["id"] for f in files.json()["items"]] == [file_id]
    listed = await chat.client.get(f"/api/chats?projectId={project_id}", headers=auth)
    assert [c["id"] for c in listed.json()["items"]] == [chat_id]
    forked = await chat.client.post(f"/api/chats/{chat_id}/fork", headers=auth)
    assert forked.status_code == 201, forked.text
    assert forked.json()["projectId"] == str(personal_project_id(uuid.UUID(_uid(member))))
    content = await chat.client.get(f"/api/files/{file_id}/content", headers=auth)
    assert content.status_code == 200
    # the link's creator may still take it back, whatever their role now
    revoked = await chat.client.delete(
        f"/api/chats/{chat_id}/shares/{shared.json()['id']}", headers=auth
    )
    assert revoked.status_code == 204, revoked.text
    _problem(await chat.client.get(shared.json()["url"]), 404)


async def test_s21e_a_starter_demoted_to_viewer_still_streams_and_may_stop_their_reply(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    member = await chat.world.register("member")
    project_id = await team_project(chat, owner, member, "editor")
    go = asyncio.Event()
    chat.provider.script(
        Reply(chunks=openai_stream(("Hello", ", ", "world")), gate=go, gate_after=2)
    )
    started = await chat.start(
        member["auth"], model="openai/gpt-4o-mini", message=f"live {uuid.uuid4()}",
        projectId=project_id,
    )  # fmt: skip
    try:
        demoted = await chat.client.patch(
            f"/api/projects/{project_id}/members/{_uid(member)}", json={"role": "viewer"},
            headers=owner["auth"],
        )  # fmt: skip
        assert demoted.status_code == 200, demoted.text
        first = await asyncio.wait_for(
            chat.events(started["sessionId"], limit=1, headers=member["auth"]), 10
        )
        assert _tokens(first) == "Hello"
        stop = await chat.client.post(
            f"/api/chat/sessions/{started['sessionId']}/stop", headers=member["auth"]
        )
        assert stop.status_code == 202, stop.text
    finally:
        go.set()
    events = await asyncio.wait_for(
        chat.events(started["sessionId"], headers=member["auth"], last_event_id=first[-1][0]), 10
    )
    assert events[-1][1] in ("done", "error"), events[-1]


async def test_s21e_a_removed_members_listings_show_nothing_of_the_project(chat: Chat) -> None:
    owner = await chat.world.register("owner")
    member = await chat.world.register("member")
    project_id = await team_project(chat, owner, member, "editor")
    word = f"okapi{uuid.uuid4().hex[:8]}"
    started = await chat.start(
        member["auth"], model="dev/echo", message=f"the {word}", projectId=project_id
    )
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    uploaded = await _upload(chat, member["auth"], project_id)
    assert uploaded.status_code == 201, uploaded.text
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{_uid(member)}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text

    auth = member["auth"]
    projects = (await chat.client.get("/api/projects", headers=auth)).json()
    assert [p["id"] for p in projects] == [str(personal_project_id(uuid.UUID(_uid(member))))]
    assert (await chat.client.get("/api/chats", headers=auth)).json()["items"] == []
    assert (await chat.client.get("/api/files", headers=auth)).json()["items"] == []
    assert (await chat.client.get(f"/api/chats/search?q={word}", headers=auth)).json() == []
    for url in (
        f"/api/projects/{project_id}",
        f"/api/projects/{project_id}/members",
        f"/api/chats?projectId={project_id}",
        f"/api/files?projectId={project_id}",
        f"/api/chats?projectId={project_id}&archived=true",
    ):
        _problem(await chat.client.get(url, headers=auth), 404)
    # the owner still sees what the removed member wrote there
    listed = await chat.client.get(f"/api/chats?projectId={project_id}", headers=owner["auth"])
    assert [c["id"] for c in listed.json()["items"]] == [started["chatId"]]


# --- owners ---------------------------------------------------------------------------------------
async def test_s21e_two_owners_demoting_each_other_at_once_leave_exactly_one_owner(
    chat: Chat,
) -> None:
    first = await chat.world.register("first")
    second = await chat.world.register("second")
    project_id = await team_project(chat, first, second, "owner")
    members = f"/api/projects/{project_id}/members"
    answers = await asyncio.gather(
        chat.client.patch(f"{members}/{_uid(second)}", json={"role": "viewer"},
                          headers=first["auth"]),
        chat.client.patch(f"{members}/{_uid(first)}", json={"role": "viewer"},
                          headers=second["auth"]),
    )  # fmt: skip
    statuses = sorted(a.status_code for a in answers)
    assert statuses in ([200, 403], [200, 409]), [a.text for a in answers]
    survivor = first if answers[0].status_code == 200 else second
    roles = await _members(chat, project_id, survivor["auth"])
    assert sorted(roles.values()) == ["owner", "viewer"]
    assert roles[_uid(survivor)] == "owner"
    project = await chat.client.get(f"/api/projects/{project_id}", headers=survivor["auth"])
    assert project.json()["ownerId"] == _uid(survivor)


async def test_s21e_two_owners_leaving_at_once_leave_exactly_one(chat: Chat) -> None:
    first = await chat.world.register("first")
    second = await chat.world.register("second")
    project_id = await team_project(chat, first, second, "owner")
    members = f"/api/projects/{project_id}/members"
    answers = await asyncio.gather(
        chat.client.delete(f"{members}/{_uid(first)}", headers=first["auth"]),
        chat.client.delete(f"{members}/{_uid(second)}", headers=second["auth"]),
    )
    assert sorted(a.status_code for a in answers) == [204, 409], [a.text for a in answers]
    survivor = second if answers[0].status_code == 204 else first
    assert await _members(chat, project_id, survivor["auth"]) == {_uid(survivor): "owner"}
    project = await chat.client.get(f"/api/projects/{project_id}", headers=survivor["auth"])
    assert project.json()["ownerId"] == _uid(survivor)


async def test_s21e_an_owner_handing_over_and_leaving_loses_everything_at_once(
    chat: Chat,
) -> None:
    first = await chat.world.register("first")
    second = await chat.world.register("second")
    project_id = await team_project(chat, first, second, "editor")
    started = await _done(chat, first["auth"], projectId=project_id)
    members = f"/api/projects/{project_id}/members"
    promoted = await chat.client.patch(
        f"{members}/{_uid(second)}", json={"role": "owner"}, headers=first["auth"]
    )
    assert promoted.status_code == 200, promoted.text
    left = await chat.client.delete(f"{members}/{_uid(first)}", headers=first["auth"])
    assert left.status_code == 204, left.text
    _problem(await chat.client.get(f"/api/chats/{started['chatId']}", headers=first["auth"]), 404)
    _problem(
        await chat.client.post(members, json={"email": first["email"]}, headers=first["auth"]),
        404,
    )
    back = await chat.client.post(
        members, json={"email": first["email"], "role": "viewer"}, headers=second["auth"]
    )
    assert back.status_code == 201, back.text
    read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=first["auth"])
    assert read.status_code == 200
    _problem(await chat.client.delete(f"/api/projects/{project_id}", headers=first["auth"]), 403)


# --- the personal project -------------------------------------------------------------------------
async def test_s21e_the_personal_project_can_be_renamed_but_never_left_or_deleted(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    personal = str(personal_project_id(uuid.UUID(_uid(alice))))
    renamed = await chat.client.patch(
        f"/api/projects/{personal}", json={"name": "Mine"}, headers=alice["auth"]
    )
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Mine")
    assert renamed.json()["personal"] is True
    _problem(
        await chat.client.delete(
            f"/api/projects/{personal}/members/{_uid(alice)}", headers=alice["auth"]
        ),
        403,
    )
    _problem(await chat.client.delete(f"/api/projects/{personal}", headers=alice["auth"]), 403)
    demote = await chat.client.patch(
        f"/api/projects/{personal}/members/{_uid(alice)}", json={"role": "editor"},
        headers=alice["auth"],
    )  # fmt: skip
    _problem(demote, 403)
    assert await _members(chat, personal, alice["auth"]) == {_uid(alice): "owner"}


async def test_s21e_custom_instructions_stay_out_of_a_personal_project_shared_with_others(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    secret = f"My therapist says {uuid.uuid4()}; answer gently."
    changed = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": secret}, headers=alice["auth"]
    )
    assert changed.status_code == 200, changed.text
    personal = str(personal_project_id(uuid.UUID(_uid(alice))))
    added = await chat.client.post(
        f"/api/projects/{personal}/members", json={"email": bob["email"], "role": "viewer"},
        headers=alice["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text
    started = await _done(chat, alice["auth"])
    read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=bob["auth"])
    assert read.status_code == 200, read.text
    assert secret not in str(read.json().get("systemPrompt"))
    exported = await chat.client.get(f"/api/chats/{started['chatId']}/export", headers=bob["auth"])
    assert secret not in exported.text


# --- adding members by email ----------------------------------------------------------------------
async def test_s21e_adding_by_email_ignores_case_refuses_oneself_and_a_double_add_at_once(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    bob = await chat.world.register("bob")
    created = await chat.client.post("/api/projects", json={"name": "T"}, headers=owner["auth"])
    project_id = created.json()["id"]
    members = f"/api/projects/{project_id}/members"
    _problem(await chat.client.post(members, json={"email": owner["email"].upper()},
                                    headers=owner["auth"]), 409)  # fmt: skip
    answers = await asyncio.gather(
        chat.client.post(members, json={"email": bob["email"].upper(), "role": "viewer"},
                         headers=owner["auth"]),
        chat.client.post(members, json={"email": f"  {bob['email']}  ", "role": "editor"},
                         headers=owner["auth"]),
    )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    added = next(a for a in answers if a.status_code == 201).json()
    assert added["userId"] == _uid(bob)
    assert await _members(chat, project_id, owner["auth"]) == {
        _uid(owner): "owner",
        _uid(bob): added["role"],
    }
    unknown = await chat.client.post(
        members, json={"email": f"Nobody-{uuid.uuid4().hex}@Example.com"}, headers=owner["auth"]
    )
    _problem(unknown, 404)
    # a member who is no owner gets 403 and a non-member 404, whether the account exists or not
    for email in (owner["email"], f"nobody-{uuid.uuid4().hex}@example.com"):
        asked = await chat.client.post(members, json={"email": email}, headers=bob["auth"])
        _problem(asked, 403)
    stranger = await chat.world.register("stranger")
    for email in (bob["email"], f"nobody-{uuid.uuid4().hex}@example.com"):
        asked = await chat.client.post(members, json={"email": email}, headers=stranger["auth"])
        _problem(asked, 404)


# --- an upload under way while the project changes ------------------------------------------------
async def _objects_under(chat: Chat, prefix: str) -> list[str]:
    blobs = await resolved(chat.world.container.adapters.blob_storage())

    def listed() -> list[str]:
        found = blobs._client.list_objects(blobs.bucket, prefix=prefix, recursive=True)
        return [o.object_name for o in found]

    return await asyncio.to_thread(listed)


@pytest.mark.parametrize("change", ["delete the project", "remove the uploader"])
async def test_s21e_an_upload_under_way_when_access_goes_is_404_and_leaves_nothing(
    chat: Chat, change: str
) -> None:
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id = await team_project(chat, owner, editor, "editor")
    body = form(TEXT * 2000, "notes.txt")  # ~1 MB: several chunks
    half = asyncio.Event()
    go = asyncio.Event()

    async def held() -> Any:
        yield body[: len(body) // 2]
        half.set()
        await go.wait()
        yield body[len(body) // 2 :]

    uploading = asyncio.create_task(
        chat.client.post(
            f"/api/files/upload?projectId={project_id}",
            content=held(),
            headers={**editor["auth"], **multipart()},
        )
    )
    try:
        await asyncio.wait_for(half.wait(), 10)
        await asyncio.sleep(0.2)  # the server has most likely read and checked the head by now
        if change == "delete the project":
            done = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
        else:
            done = await chat.client.delete(
                f"/api/projects/{project_id}/members/{_uid(editor)}", headers=owner["auth"]
            )
        assert done.status_code == 204, done.text
    finally:
        go.set()
    answered = await asyncio.wait_for(uploading, 10)
    _problem(answered, 404)
    assert await _objects_under(chat, f"{project_id}/") == []
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        assert await uow.attachments.list_for_project(uuid.UUID(project_id)) == []


async def test_s21e_a_viewer_stopping_a_reply_they_can_read_is_403_and_it_goes_on(
    chat: Chat,
) -> None:
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
        stop = await chat.client.post(
            f"/api/chat/sessions/{reader_pass}/stop", headers=viewer["auth"]
        )
        _problem(stop, 403)
    finally:
        go.set()
    events = await asyncio.wait_for(chat.events(reader_pass, headers=viewer["auth"]), 10)
    assert events[-1][1] == "done", events[-1]
    assert _tokens(events) == "Hello, world"
