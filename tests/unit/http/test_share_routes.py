"""Shared links: make, list and revoke them under /api/chats/{id}/shares; anyone reads one at
/api/shared/{token} without credentials, and it shows nothing private."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer
from tests.unit.http.test_chat_routes import SeedCaller, add_message, new_chat, new_project
from whalli.domain.model.chats import Message, MessageStatus, TokenUsage

PRIVATE_KEYS = {"userId", "email", "projectId", "costUsd", "systemPrompt"}


@pytest.fixture
def seed(container: FakeContainer, client: AsyncTestClient[Litestar]) -> SeedCaller:
    async def make(name: str) -> Caller:
        return await seed_caller(container, client, name)

    return make


def keys_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_in(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_in(v)}
    return set()


def test_keys_in_finds_nested_keys() -> None:
    assert keys_in({"a": [{"userId": 1}], "b": {"c": {"email": 2}}}) >= {"userId", "email"}


async def a_chat_with_a_reply(container: FakeContainer, project_id: str, author: Caller) -> str:
    chat_id = await new_chat(container, project_id, author, "Taxes")
    async with container.uow() as uow:
        chat = await uow.chats.get(UUID(chat_id))
        chat.instruct("Secret instructions", container.clock.now())
        await uow.chats.update(chat)
        await uow.commit()
    now = container.clock.now()
    question = Message.from_user(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                 content="Why?", now=now)  # fmt: skip
    reply = Message.pending_reply(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                  model="dev/echo", provider="dev", now=now)  # fmt: skip
    reply.finish(status=MessageStatus.COMPLETE, content="Because.", now=now,
                 usage=TokenUsage(prompt_tokens=3, completion_tokens=2), cost_usd=0.25)  # fmt: skip
    await add_message(container, chat_id, question)
    await add_message(container, chat_id, reply)
    return chat_id


async def test_an_editor_shares_a_chat_and_anyone_reads_it_without_credentials(
    seed: SeedCaller,
    container: FakeContainer,
    client: AsyncTestClient[Litestar],
) -> None:
    ada, eve = await seed("ada"), await seed("eve")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada, (eve, "editor")), ada)

    made = await eve.call("POST", f"/api/chats/{chat_id}/shares")
    assert made.status_code == 201, made.text
    body = made.json()
    token = body["token"]
    await add_message(container, chat_id, Message.from_user(
        id=container.ids.new_id(), chat_id=UUID(chat_id), content="After", now=container.clock.now()
    ))  # fmt: skip
    public = await client.get(f"/api/shared/{token}")  # no credentials at all

    assert set(body) == {"id", "token", "url", "createdAt", "messageCount"}
    assert (body["url"], body["messageCount"]) == (f"/api/shared/{token}", 2)
    assert public.status_code == 200, public.text
    assert public.headers["cache-control"] == "no-store"
    shown = public.json()
    assert shown == {
        "title": "Taxes", "model": "dev/echo", "sharedAt": body["createdAt"],
        "messages": [
            {"role": "user", "content": "Why?", "model": None,
             "createdAt": shown["messages"][0]["createdAt"], "status": "complete",
             "reasoning": None},
            {"role": "assistant", "content": "Because.", "model": "dev/echo",
             "createdAt": shown["messages"][1]["createdAt"], "status": "complete",
             "reasoning": None},
        ],
    }  # fmt: skip
    assert keys_in(shown).isdisjoint(PRIVATE_KEYS)
    assert "Secret instructions" not in public.text
    assert ada.id not in public.text
    assert eve.id not in public.text


async def test_members_list_live_links_without_tokens_and_revoking_one_closes_it(
    seed: SeedCaller,
    container: FakeContainer,
    client: AsyncTestClient[Litestar],
) -> None:
    ada, vic = await seed("ada"), await seed("vic")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada, (vic, "viewer")), ada)
    first = (await ada.call("POST", f"/api/chats/{chat_id}/shares")).json()
    second = (await ada.call("POST", f"/api/chats/{chat_id}/shares")).json()

    listed = await vic.call("GET", f"/api/chats/{chat_id}/shares")
    by_viewer = await vic.call("DELETE", f"/api/chats/{chat_id}/shares/{first['id']}")
    revoked = await ada.call("DELETE", f"/api/chats/{chat_id}/shares/{first['id']}")
    again = await ada.call("DELETE", f"/api/chats/{chat_id}/shares/{first['id']}")
    closed = await client.get(f"/api/shared/{first['token']}")
    still_open = await client.get(f"/api/shared/{second['token']}")
    after = await vic.call("GET", f"/api/chats/{chat_id}/shares")

    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()] == [second["id"], first["id"]]
    assert listed.json()[0] == {
        "id": second["id"], "createdAt": second["createdAt"], "createdBy": ada.id,
        "messageCount": 2,
    }  # fmt: skip
    assert first["token"] not in listed.text
    assert (by_viewer.status_code, by_viewer.json()["code"]) == (403, "permission_denied")
    assert revoked.status_code == 204
    assert (again.status_code, again.json()["code"]) == (404, "share_not_found")
    assert closed.status_code == 404
    assert closed.headers["content-type"].startswith("application/problem+json")
    assert closed.json()["code"] == "share_not_found"
    assert still_open.status_code == 200
    assert [s["id"] for s in after.json()] == [second["id"]]


async def test_a_viewer_gets_403_and_a_stranger_404_like_a_missing_chat(
    seed: SeedCaller,
    container: FakeContainer,
) -> None:
    ada, vic, sam = await seed("ada"), await seed("vic"), await seed("sam")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada, (vic, "viewer")), ada)
    share_id = (await ada.call("POST", f"/api/chats/{chat_id}/shares")).json()["id"]

    viewer = await vic.call("POST", f"/api/chats/{chat_id}/shares")
    stranger = await sam.call("POST", f"/api/chats/{chat_id}/shares")
    missing = await sam.call("POST", f"/api/chats/{uuid.uuid4()}/shares")
    stranger_list = await sam.call("GET", f"/api/chats/{chat_id}/shares")
    stranger_revoke = await sam.call("DELETE", f"/api/chats/{chat_id}/shares/{share_id}")

    assert (viewer.status_code, viewer.json()["code"]) == (403, "permission_denied")
    for answer in (stranger, missing, stranger_list, stranger_revoke):
        assert answer.status_code == 404
        assert answer.json()["code"] == "chat_not_found"


async def test_unknown_malformed_and_deleted_chats_links_are_404_problems(
    seed: SeedCaller,
    container: FakeContainer,
    client: AsyncTestClient[Litestar],
) -> None:
    ada = await seed("ada")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada), ada)
    token = (await ada.call("POST", f"/api/chats/{chat_id}/shares")).json()["token"]
    deleted = await ada.call("DELETE", f"/api/chats/{chat_id}")
    assert deleted.status_code == 204

    for path in (token, "A" * 43, "not%20a%20token", "x"):
        answer = await client.get(f"/api/shared/{path}")
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "share_not_found"


async def test_the_21st_live_link_is_422_with_a_clear_problem(
    seed: SeedCaller,
    container: FakeContainer,
) -> None:
    ada = await seed("ada")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada), ada)
    for _ in range(20):
        assert (await ada.call("POST", f"/api/chats/{chat_id}/shares")).status_code == 201

    refused = await ada.call("POST", f"/api/chats/{chat_id}/shares")

    assert refused.status_code == 422
    problem = refused.json()
    assert (problem["code"], problem["limit"]) == ("share_limit_reached", 20)
    assert "at most 20 shared links" in problem["detail"]


async def test_the_share_management_routes_need_a_credential(
    client: AsyncTestClient[Litestar],
) -> None:
    chat_id = uuid.uuid4()
    for method, path in [
        ("POST", f"/api/chats/{chat_id}/shares"),
        ("GET", f"/api/chats/{chat_id}/shares"),
        ("DELETE", f"/api/chats/{chat_id}/shares/{uuid.uuid4()}"),
    ]:
        assert (await client.request(method, path)).status_code == 401, (method, path)


async def test_a_link_made_with_an_expiry_shows_it_and_answers_404_once_it_passed(
    seed: SeedCaller,
    container: FakeContainer,
    client: AsyncTestClient[Litestar],
) -> None:
    ada = await seed("ada")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada), ada)
    until = container.clock.now() + timedelta(days=2)

    made = await ada.call("POST", f"/api/chats/{chat_id}/shares", {"expiresAt": until.isoformat()})
    assert made.status_code == 201, made.text
    body = made.json()
    listed = (await ada.call("GET", f"/api/chats/{chat_id}/shares")).json()
    before = await client.get(f"/api/shared/{body['token']}")
    container.clock.set(until)
    after = await client.get(f"/api/shared/{body['token']}")
    listed_after = (await ada.call("GET", f"/api/chats/{chat_id}/shares")).json()

    assert datetime.fromisoformat(body["expiresAt"]) == until
    assert [datetime.fromisoformat(s["expiresAt"]) for s in listed] == [until]
    assert before.status_code == 200, before.text
    assert (after.status_code, after.json()["code"]) == (404, "share_not_found")
    assert listed_after == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"expiresAt": "2000-01-01T00:00:00Z"}, 422, "expiresAt"),
        ({"expiresAt": "2999-01-01T00:00:00Z"}, 422, "expiresAt"),
        ({"expiresAt": "next week"}, 400, None),
        ({"expiresInDays": 3}, 400, None),
    ],
)
async def test_a_bad_expiry_or_an_unknown_field_is_refused_and_no_link_is_made(
    seed: SeedCaller,
    container: FakeContainer,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    ada = await seed("ada")
    chat_id = await a_chat_with_a_reply(container, await new_project(ada), ada)

    refused = await ada.call("POST", f"/api/chats/{chat_id}/shares", body)
    listed = (await ada.call("GET", f"/api/chats/{chat_id}/shares")).json()

    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert refused.json()["field"] == field
    assert listed == []
