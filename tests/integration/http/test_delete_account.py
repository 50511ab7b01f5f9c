"""DELETE /api/auth/me through the real app, container, Postgres, Redis and S3."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.http.test_chat_races import RaceChat
from tests.integration.http.test_files import TEXT, form, multipart
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.support.access import changed
from tests.support.fake_providers import FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.errors import BlobNotFound, ProjectNotFound, UserNotFound
from whalli.domain.model.replies import ErrorEvent
from whalli.domain.services.projects.ensure_personal_project import personal_project_id


async def _delete_me(chat: Chat, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await chat.client.request("DELETE", "/api/auth/me", json=body, headers=auth)


async def _upload(chat: Chat, auth: dict[str, str], project_id: str | None = None) -> str:
    query = f"?projectId={project_id}" if project_id else ""
    response = await chat.client.post(
        f"/api/files/upload{query}",
        content=form(TEXT, "notes.txt"),
        headers={**auth, **multipart()},
    )
    assert response.status_code == 201, response.text
    uploaded: dict[str, Any] = response.json()
    return f"{uploaded['projectId']}/{uploaded['id']}"


async def _exists(chat: Chat, key: str) -> bool:
    blobs = chat.world.container.adapters.blob_storage()
    try:
        await blobs.stat(key)
    except BlobNotFound:
        return False
    return True


async def _project(chat: Chat, auth: dict[str, str], name: str) -> str:
    created = await chat.client.post("/api/projects", json={"name": name}, headers=auth)
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    return project_id


def _id(user: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(user["user"]["id"])


async def test_a_deleted_account_loses_its_rows_files_and_credentials_and_others_keep_theirs(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    auth = alice["auth"]
    side = await _project(chat, auth, "Side")
    team = await team_project(chat, bob, alice, "editor")
    alices_keys = [
        await _upload(chat, auth),  # her personal project
        await _upload(chat, auth, side),  # her unshared project
        await _upload(chat, auth, team),  # bob's project
    ]
    bobs_key = await _upload(chat, bob["auth"], team)
    await chat.start(auth, model="dev/echo", message="hello from alice", projectId=team)
    bobs_chat = await chat.start(bob["auth"], model="dev/echo", message="hello from bob")
    key = await chat.client.post("/api/keys", json={"name": "cli"}, headers=auth)
    assert key.status_code == 201, key.text
    api_key = {"Authorization": f"Bearer {key.json()['secret']}"}

    with capture_logs() as logs:
        deleted = await _delete_me(chat, auth, password=PASSWORD)

    assert deleted.status_code == 204, deleted.text
    assert [e for e in logs if e["event"] == "account_deleted"] == [
        {"event": "account_deleted", "user_id": alice["user"]["id"], "log_level": "info"}
    ]
    assert alice["email"] not in repr(logs)
    assert PASSWORD not in repr(logs)
    # every credential is dead; a login is refused exactly like one of an unknown account
    assert (await chat.client.get("/api/auth/me", headers=auth)).status_code == 401
    assert (await chat.client.get("/api/auth/me", headers=api_key)).status_code == 401
    refresh = {"refreshToken": alice["tokens"]["refreshToken"]}
    assert (await chat.client.post("/api/auth/refresh", json=refresh)).status_code == 401
    login = await chat.client.post(
        "/api/auth/login", json={"email": alice["email"], "password": PASSWORD}
    )
    unknown = await chat.client.post(
        "/api/auth/login", json={"email": f"nobody-{uuid.uuid4().hex}@x.org", "password": PASSWORD}
    )
    assert login.status_code == unknown.status_code == 401
    assert login.json()["code"] == unknown.json()["code"] == "invalid_credentials"
    assert login.json()["detail"] == unknown.json()["detail"]
    # her files' objects are gone from S3, bob's stays
    assert [await _exists(chat, k) for k in alices_keys] == [False, False, False]
    assert await _exists(chat, bobs_key)
    # her rows are gone; bob keeps his projects, his file, his chat and his membership alone
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        with pytest.raises(UserNotFound, match="not found"):
            await uow.users.get(_id(alice))
        assert await uow.projects.list_owned(_id(alice)) == []
        assert await uow.attachments.object_keys_for_user(_id(alice)) == []
        members = await uow.projects.list_members(uuid.UUID(team))
        for gone in (uuid.UUID(side), personal_project_id(_id(alice))):
            with pytest.raises(ProjectNotFound, match="not found"):
                await uow.projects.get(gone)
    assert [m.user_id for m in members] == [_id(bob)]
    files = await chat.client.get(f"/api/files?projectId={team}", headers=bob["auth"])
    assert [f["id"] for f in files.json()["items"]] == [bobs_key.split("/")[1]]
    team_chats = await chat.client.get(f"/api/chats?projectId={team}", headers=bob["auth"])
    assert team_chats.json()["items"] == []  # alice's chat in his project went with her
    mine = await chat.client.get(f"/api/chats/{bobs_chat['chatId']}", headers=bob["auth"])
    assert mine.status_code == 200
    # the address registers again, as a fresh and empty account
    again = await chat.client.post(
        "/api/auth/register", json={"email": alice["email"], "password": PASSWORD}
    )
    assert again.status_code == 201, again.text
    assert again.json()["user"]["id"] != alice["user"]["id"]
    fresh = {"Authorization": f"Bearer {again.json()['tokens']['accessToken']}"}
    projects = (await chat.client.get("/api/projects", headers=fresh)).json()
    assert [p["personal"] for p in projects] == [True]
    assert (await chat.client.get("/api/chats", headers=fresh)).json()["items"] == []
    assert (await chat.client.get("/api/files", headers=fresh)).json()["items"] == []


async def test_a_confirmation_missing_or_wrong_is_a_problem_naming_its_field_and_deletes_nothing(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]

    wrong = await _delete_me(chat, auth, password="not my password at all")
    missing = await _delete_me(chat, auth)
    unknown_field = await _delete_me(chat, auth, password=PASSWORD, sure=True)

    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert (wrong.json()["code"], wrong.json()["field"]) == ("invalid_credentials", "password")
    assert missing.status_code == 422
    assert (missing.json()["code"], missing.json()["field"]) == ("invalid_input", "password")
    assert unknown_field.status_code == 400
    assert (await chat.client.get("/api/auth/me", headers=auth)).status_code == 200


async def test_an_api_key_cannot_delete_the_account(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    key = await chat.client.post("/api/keys", json={"name": "cli"}, headers=alice["auth"])
    api_key = {"X-API-Key": key.json()["secret"]}

    refused = await _delete_me(chat, api_key, password=PASSWORD)

    assert refused.status_code == 403
    assert refused.json()["code"] == "api_key_not_allowed"
    assert (await chat.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200


async def test_an_account_without_a_password_confirms_with_its_address(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:  # as an OAuth sign-up makes it
        user = await uow.users.get(_id(alice))
        user.password_hash = None
        await uow.users.update(user)
        await uow.commit()
    await changed(chat.world.container, user.id)

    with_password = await _delete_me(chat, alice["auth"], password=PASSWORD)
    other = await _delete_me(chat, alice["auth"], email="someone-else@example.com")
    assert with_password.status_code == other.status_code == 422
    assert with_password.json()["field"] == other.json()["field"] == "email"

    typed = f"  {alice['email'].upper()} "
    assert (await _delete_me(chat, alice["auth"], email=typed)).status_code == 204
    assert (await chat.client.get("/api/auth/me", headers=alice["auth"])).status_code == 401


async def test_owning_a_project_others_use_is_a_409_naming_it_until_it_is_handed_over(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    team = await team_project(chat, alice, bob, "editor")
    bobs_key = await _upload(chat, bob["auth"], team)

    refused = await _delete_me(chat, alice["auth"], password=PASSWORD)

    assert refused.status_code == 409
    assert refused.json()["code"] == "owns_shared_projects"
    assert refused.json()["projectIds"] == [team]
    assert (await chat.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200
    # handed over: bob becomes an owner and alice leaves; then she can go, and he keeps it
    promoted = await chat.client.patch(
        f"/api/projects/{team}/members/{bob['user']['id']}", json={"role": "owner"},
        headers=alice["auth"],
    )  # fmt: skip
    assert promoted.status_code == 200, promoted.text
    left = await chat.client.delete(
        f"/api/projects/{team}/members/{alice['user']['id']}", headers=alice["auth"]
    )
    assert left.status_code == 204, left.text
    assert (await _delete_me(chat, alice["auth"], password=PASSWORD)).status_code == 204
    kept = await chat.client.get(f"/api/projects/{team}", headers=bob["auth"])
    assert kept.status_code == 200
    assert await _exists(chat, bobs_key)


async def test_the_last_active_admin_cannot_delete_their_account(
    stack_urls: StackUrls, own_database: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider, WHALLI_DATABASE_URL=own_database) as chat,
    ):
        first = await chat.world.create_admin()

        refused = await _delete_me(chat, first, password=PASSWORD)
        assert refused.status_code == 409
        assert refused.json()["code"] == "last_admin"

        second = await chat.world.create_admin()
        assert (await _delete_me(chat, first, password=PASSWORD)).status_code == 204
        assert (await _delete_me(chat, second, password=PASSWORD)).json()["code"] == "last_admin"


async def test_deletion_attempts_count_against_the_accounts_login_limit(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="2/60") as chat:
        alice = await chat.world.register("alice")
        statuses = [
            (await _delete_me(chat, alice["auth"], password=f"guess {i}")).status_code
            for i in range(3)
        ]
        assert statuses == [401, 401, 429]
        limited = await _delete_me(chat, alice["auth"], password=PASSWORD)
        assert limited.status_code == 429
        assert (await chat.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200


async def test_deletion_attempts_with_an_api_key_spend_none_of_the_accounts_login_limit(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="2/60") as chat:
        alice = await chat.world.register("alice")
        key = await chat.client.post("/api/keys", json={"name": "cli"}, headers=alice["auth"])
        api_key = {"X-API-Key": key.json()["secret"]}

        refused = [await _delete_me(chat, api_key, password=PASSWORD) for _ in range(4)]

        assert [r.status_code for r in refused] == [403] * 4, refused[-1].text
        assert {r.json()["code"] for r in refused} == {"api_key_not_allowed"}
        login = {"email": alice["email"], "password": PASSWORD}
        assert (await chat.client.post("/api/auth/login", json=login)).status_code == 200
        deleted = await _delete_me(chat, alice["auth"], password=PASSWORD)
        assert deleted.status_code == 204, deleted.text


async def test_a_reply_still_generated_when_its_account_is_deleted_ends_quietly(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    gate = asyncio.Event()  # the provider sends the rest of the reply once the account is gone
    chat.provider.script(Reply(chunks=openai_pieces(["first", " rest"]), gate=gate, gate_after=2))
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"doomed {uuid.uuid4()}"
    )
    first = await chat.events(started["sessionId"], limit=1)
    assert first[0][1] == "token"

    with capture_logs() as logs:
        assert (await _delete_me(chat, alice["auth"], password=PASSWORD)).status_code == 204
        gate.set()
        final = await _final_event(chat, started["sessionId"])

    assert isinstance(final, ErrorEvent)
    assert final.code == "chat_deleted"
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    assert not [e for e in logs if e["event"] == "generation_failed"]


async def _final_event(chat: Chat, session_id: str) -> object:
    stream = chat.world.container.adapters.reply_stream()
    for _ in range(400):  # until the generation ends (a bound against hanging, not a deadline)
        last = await stream.last(session_id)
        if last is not None and last[1].__class__.__name__ in ("DoneEvent", "ErrorEvent"):
            return last[1]
        await asyncio.sleep(0.05)
    raise AssertionError("the reply never ended")


async def test_deleting_the_account_closes_the_provider_call_of_its_reply(
    patient: RaceChat,
) -> None:
    """As deleting a chat does: the reply is asked to stop, so the upstream call closes within
    a poll interval rather than running, billed, to its end (the provider here never ends it)."""
    chat = patient
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_pieces(["endless"], usage=None)[:-2], hold=True))
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"long {uuid.uuid4()}"
    )
    assert [kind for _, kind, _ in await chat.events(started["sessionId"], limit=1)] == ["token"]

    assert (await _delete_me(chat, alice["auth"], password=PASSWORD)).status_code == 204
    try:  # generous: a stop's poll is 0.25 s; the provider's own idle timeout is 300 s
        await asyncio.wait_for(chat.provider.disconnected.wait(), 10)
        closed = True
    except TimeoutError:
        closed = False
    finally:
        if not closed:  # end it, so the test leaves nothing running
            stream = await resolved(chat.world.container.adapters.reply_stream())
            await stream.request_stop(started["sessionId"], 60)
    assert closed, "the provider call of the deleted account's reply was still open"
    final = await _final_event(chat, started["sessionId"])
    assert isinstance(final, ErrorEvent)
    assert final.code == "chat_deleted"
