"""What taking someone's access away ends at once (s32), on the real app (Postgres, Redis, a
loopback provider; a loopback SMTP server for the mailed reset):

- a member removed from a project (by an owner, by leaving, an owner leaving whose ownership
  moves on, or by the first proof of a squatted account's mailbox) loses the shared links they
  made to the project's chats, for good: they were only hidden while the member was out, yet
  listed and counted as live, and opened again once the member was added back;
- a ``/v1`` completion streamed with a credential that ends meanwhile (its account disabled, its
  API key revoked) stops: the provider's stream closed, an error chunk ending the client's
  stream, the usage so far recorded (it ran to its end, billed to the account: it has no chat
  session, so nothing could stop it).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_chat_races import RaceChat, _race_app, usage
from tests.integration.http.test_s32_reset_takeover import (
    WEB_URL,
    Squatted,
    _reset,
    _reset_link,
)
from tests.support.fake_providers import FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.fake_smtp import FakeSmtpServer
from whalli.adapters.embedded.stack import StackUrls

MODEL = "dev/echo"
V1_MODEL = "openai/gpt-4o-mini"
PIECES = 400  # the provider's reply: one word every 50 ms, 20 s in all


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def mailed(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, smtp: FakeSmtpServer
) -> AsyncIterator[Chat]:
    async with chat_app(
        stack_urls, unique, WHALLI_SMTP_HOST="127.0.0.1", WHALLI_SMTP_PORT=str(smtp.port),
        WHALLI_SMTP_TLS="none", WHALLI_SMTP_FROM="accounts@whalli.test", WHALLI_WEB_URL=WEB_URL,
    ) as chat:  # fmt: skip
        yield chat


@pytest.fixture
async def race(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[RaceChat]:
    """The app on uvicorn (a stream is read while other requests are made)."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_TITLES="off") as chat,
    ):
        yield chat


# --- helpers ------------------------------------------------------------------------------------
def _uid(person: dict[str, Any]) -> str:
    user_id: str = person["user"]["id"]
    return user_id


async def _new_chat(chat: Chat, auth: dict[str, str], **body: Any) -> str:
    started = await chat.start(auth, model=MODEL, message=f"hi {uuid.uuid4()}", **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return str(started["chatId"])


async def _share(chat: Chat, auth: dict[str, str], chat_id: str) -> dict[str, Any]:
    made = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=auth)
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def _opens(chat: Chat, link: dict[str, Any]) -> int:
    return (await chat.client.get(f"/api/shared/{link['token']}")).status_code


async def _listed(chat: Chat, chat_id: str, auth: dict[str, str]) -> list[str]:
    listed = await chat.client.get(f"/api/chats/{chat_id}/shares", headers=auth)
    assert listed.status_code == 200, listed.text
    return [s["id"] for s in listed.json()]


async def _add(
    chat: Chat, project_id: str, owner: dict[str, Any], member: dict[str, Any], role: str
) -> None:
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": member["email"], "role": role}, headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text


async def _remove(
    chat: Chat, project_id: str, by: dict[str, Any], member: dict[str, Any]
) -> httpx.Response:
    return await chat.client.delete(
        f"/api/projects/{project_id}/members/{_uid(member)}", headers=by["auth"]
    )


# --- a member out of a project: their links there -----------------------------------------------
@pytest.mark.parametrize("who", ["an owner removes them", "they leave"])
async def test_a_member_out_of_a_project_loses_their_links_there_for_good(
    chat: Chat, who: str
) -> None:
    owner, eve = await chat.world.register("owner"), await chat.world.register("eve")
    project_id = await team_project(chat, owner, eve, "editor")
    chat_id = await _new_chat(chat, owner["auth"], projectId=project_id)
    by_owner, by_eve = (
        await _share(chat, owner["auth"], chat_id),
        await _share(chat, eve["auth"], chat_id),
    )
    elsewhere = await _share(chat, eve["auth"], await _new_chat(chat, eve["auth"]))

    removed = await _remove(chat, project_id, eve if who == "they leave" else owner, eve)

    assert removed.status_code == 204, removed.text
    # what the members are shown is what opens: her link is no longer listed as live
    assert await _listed(chat, chat_id, owner["auth"]) == [by_owner["id"]]
    await _add(chat, project_id, owner, eve, "editor")
    assert await _opens(chat, by_eve) == 404, "a removed member's link opens again once back"
    assert await _listed(chat, chat_id, eve["auth"]) == [by_owner["id"]]
    assert (await _opens(chat, by_owner), await _opens(chat, elsewhere)) == (200, 200)
    again = await _share(chat, eve["auth"], chat_id)  # back, she may share anew
    assert await _opens(chat, again) == 200


async def test_an_owner_leaving_whose_ownership_moves_on_loses_their_links_there(
    chat: Chat,
) -> None:
    first, second = await chat.world.register("first"), await chat.world.register("second")
    project_id = await team_project(chat, first, second, "owner")
    chat_id = await _new_chat(chat, first["auth"], projectId=project_id)
    by_first, by_second = (
        await _share(chat, first["auth"], chat_id),
        await _share(chat, second["auth"], chat_id),
    )

    left = await _remove(chat, project_id, first, first)

    assert left.status_code == 204, left.text
    shown = await chat.client.get(f"/api/projects/{project_id}", headers=second["auth"])
    assert shown.json()["ownerId"] == _uid(second), shown.text
    assert await _listed(chat, chat_id, second["auth"]) == [by_second["id"]]
    await _add(chat, project_id, second, first, "owner")
    assert (await _opens(chat, by_first), await _opens(chat, by_second)) == (404, 200)


async def test_a_first_proof_reset_revokes_the_links_the_account_made_where_it_leaves(
    mailed: Chat, smtp: FakeSmtpServer
) -> None:
    """The squatter's account leaves the projects it did not own at the mailbox's first proof:
    the links it made there go with it (they were still listed and counted as live there)."""
    chat = mailed
    ada, mallory = await chat.world.register("ada"), await chat.world.register("mallory")
    squatted = await Squatted(chat, ada, mallory).set_up()
    theirs_chat = await _new_chat(chat, mallory["auth"], projectId=squatted.theirs)
    by_ada, by_mallory = (
        await _share(chat, ada["auth"], theirs_chat),
        await _share(chat, mallory["auth"], theirs_chat),
    )

    reset = await _reset(chat, await _reset_link(chat, smtp, ada["email"]))

    assert reset.status_code == 200, reset.text
    assert await _listed(chat, theirs_chat, mallory["auth"]) == [by_mallory["id"]]
    await _add(chat, squatted.theirs, mallory, ada, "editor")
    assert (await _opens(chat, by_ada), await _opens(chat, by_mallory)) == (404, 200)


# --- a /v1 stream whose credential ends -------------------------------------------------------
async def _end_credential(chat: Chat, how: str, ada: dict[str, Any], key_id: str) -> None:
    if how == "its account is disabled":
        admin = await chat.world.create_admin()
        ended = await chat.client.patch(
            f"/api/admin/users/{_uid(ada)}", json={"disabled": True}, headers=admin
        )
        assert ended.status_code == 200, ended.text
    else:
        ended = await chat.client.delete(f"/api/keys/{key_id}", headers=ada["auth"])
        assert ended.status_code == 204, ended.text


@pytest.mark.parametrize("how", ["its account is disabled", "its API key is revoked"])
async def test_a_v1_stream_stops_when_its_credential_ends_and_is_billed_what_it_used(
    race: RaceChat, how: str
) -> None:
    """A key leaked and revoked, an account disabled for abuse: what it has streaming must end
    too, as a chat's reply does, not run on to the end billed to the account."""
    chat = race
    ada = await chat.world.register("ada")
    made = await chat.client.post("/api/keys", json={"name": "v1"}, headers=ada["auth"])
    assert made.status_code == 201, made.text
    words = [f" w{i}" for i in range(PIECES)]
    chat.provider.script(Reply(chunks=openai_pieces(words, usage=(9, PIECES)), delay=0.05))
    since = datetime.now(UTC)
    body = {
        "model": V1_MODEL, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"long {uuid.uuid4()}"}],
    }  # fmt: skip
    key = {"Authorization": f"Bearer {made.json()['secret']}"}
    received: list[str] = []
    chunks: list[Any] = []

    async def read_to_the_end() -> None:
        async with chat.client.stream("POST", "/v1/chat/completions", json=body, headers=key) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                chunk = data if data == "[DONE]" else json.loads(data)
                chunks.append(chunk)
                if isinstance(chunk, dict):
                    pieces = [c["delta"].get("content") for c in chunk.get("choices", [])]
                    received.extend(p for p in pieces if p)
                if received and not begun.done():
                    begun.set_result(None)

    begun: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(read_to_the_end())
    try:
        await asyncio.wait_for(asyncio.shield(begun), timeout=30)
        await _end_credential(chat, how, ada, made.json()["id"])
        # (a guard against hanging forever, the reply being long)
        await asyncio.wait_for(asyncio.shield(reader), timeout=120)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    assert len(received) < PIECES, "the stream ran to its end"
    assert chat.provider.early_disconnects == 1  # the provider's stream was closed
    assert chunks[-1] != "[DONE]", chunks[-3:]
    error = chunks[-1]["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_token"), error
    used = await usage(chat, ada, since)
    assert used.requests == 1
    # the usage so far, estimated from the words passed on: the provider counts the whole
    # reply (PIECES) only at its end
    assert 0 < used.completion_tokens < PIECES, used
