"""Hunt S32 of what an admin's change to an account does to what the account has in flight, and
of plan gating on the paths S21 did not pin, through the real app on Postgres and Redis (a
loopback OpenAI provider held open by a gate where a reply must be in flight).

Findings (failing before their fixes): a disabled account's shared links came back to life
when the account was enabled again (they were only hidden while it stayed disabled, and went
on being listed and counted as live meanwhile); a reply being generated when its account was
disabled went on to its end, streamed to whoever held it open and billed to the account.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_chat_races import RaceChat, _race_app, settled, stored
from tests.support.fake_providers import FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chats import MessageStatus

MODEL = "openai/gpt-4o-mini"  # min_plan free
PRO = "openai/gpt-4o"  # min_plan pro
Events = list[tuple[str | None, str, dict[str, Any]]]


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


# --- helpers -------------------------------------------------------------------------------------
async def _admin_patch(
    chat: Chat, admin: dict[str, str], user: dict[str, Any], **change: Any
) -> dict[str, Any]:
    changed = await chat.client.patch(
        f"/api/admin/users/{user['user']['id']}", json=change, headers=admin
    )
    assert changed.status_code == 200, changed.text
    body: dict[str, Any] = changed.json()
    return body


async def _done(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    started = await chat.start(auth, **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started


async def _share(chat: Chat, auth: dict[str, str], chat_id: str) -> dict[str, Any]:
    made = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=auth)
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def _sign_in(chat: Chat, user: dict[str, Any]) -> dict[str, str]:
    from tests.integration.http.test_identity_end_to_end import PASSWORD

    response = await chat.client.post(
        "/api/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


async def _events_of(response: httpx.Response) -> AsyncIterator[tuple[str | None, str, Any]]:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")


# --- disabling: shared links ---------------------------------------------------------------------
async def test_a_disabled_accounts_links_stay_dead_once_it_is_enabled_again(chat: Chat) -> None:
    """A link made with a stolen session must die with the account's disabling (the read rule
    says so), and an account is enabled again once its owner is back in control: the thief's
    links must not open again then, as its API keys, sessions and mailed links do not."""
    admin = await chat.world.create_admin()
    owner = await chat.world.register("owner")
    mallory = await chat.world.register("mallory")
    project_id = await team_project(chat, owner, mallory, "editor")
    started = await _done(chat, owner["auth"], model=MODEL, message="team", projectId=project_id)
    own = await _done(chat, mallory["auth"], model=MODEL, message=f"mine {uuid.uuid4()}")
    by_mallory = await _share(chat, mallory["auth"], started["chatId"])
    personal = await _share(chat, mallory["auth"], own["chatId"])
    by_owner = await _share(chat, owner["auth"], started["chatId"])

    await _admin_patch(chat, admin, mallory, disabled=True)
    listed_while_disabled = await chat.client.get(
        f"/api/chats/{started['chatId']}/shares", headers=owner["auth"]
    )
    await _admin_patch(chat, admin, mallory, disabled=False)
    mallory_auth = await _sign_in(chat, mallory)

    for token in (by_mallory["token"], personal["token"]):
        shown = await chat.client.get(f"/api/shared/{token}")
        assert shown.status_code == 404, "a disabled account's link opens again once enabled"
        assert shown.json()["code"] == "share_not_found", shown.text
    assert (await chat.client.get(f"/api/shared/{by_owner['token']}")).status_code == 200
    # what the chat's members are shown is what opens: a dead link is not listed as live
    assert listed_while_disabled.status_code == 200, listed_while_disabled.text
    assert [s["id"] for s in listed_while_disabled.json()] == [by_owner["id"]]
    mine = await chat.client.get(f"/api/chats/{own['chatId']}/shares", headers=mallory_auth)
    assert mine.json() == []
    # the account itself works again: it may share anew
    again = await _share(chat, mallory_auth, own["chatId"])
    assert (await chat.client.get(f"/api/shared/{again['token']}")).status_code == 200


async def test_a_plan_or_role_change_leaves_the_accounts_links_open(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    own = await _done(chat, alice["auth"], model=MODEL, message=f"kept {uuid.uuid4()}")
    link = await _share(chat, alice["auth"], own["chatId"])
    await _admin_patch(chat, admin, alice, plan="pro")
    await _admin_patch(chat, admin, alice, role="admin")
    await _admin_patch(chat, admin, alice, role="user", plan="free")
    assert (await chat.client.get(f"/api/shared/{link['token']}")).status_code == 200


# --- disabling: a reply in flight ----------------------------------------------------------------
async def test_a_reply_generating_when_its_account_is_disabled_stops_and_keeps_its_text(
    race: RaceChat,
) -> None:
    """Disabling an account (abuse, a stolen session) must end what it is doing: a reply it is
    being written stops as a stop asks (the upstream call closed, nothing more billed, the
    reply saved ``aborted`` with the text it had), and the stream held open ends with it, as
    deleting the account stops its replies."""
    chat = race
    admin = await chat.world.create_admin()
    mallory = await chat.world.register("mallory")
    gate = asyncio.Event()  # never set: the provider sends one token, then waits
    chat.provider.script(
        Reply(chunks=openai_pieces(["first", " rest"], usage=(9, 2)), gate=gate, gate_after=2)
    )
    started = await chat.start(mallory["auth"], model=MODEL, message=f"long {uuid.uuid4()}")
    seen: list[tuple[str | None, str, Any]] = []
    url = f"/api/chat/stream?sessionId={started['sessionId']}"

    async def read_to_the_end() -> None:
        async with chat.client.stream("GET", url) as response:
            assert response.status_code == 200
            async for event in _events_of(response):
                seen.append(event)
                if event[1] == "token" and not disabled.done():
                    disabled.set_result(None)
                if event[1] in ("done", "error"):
                    return

    disabled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(read_to_the_end())
    try:
        await asyncio.wait_for(asyncio.shield(disabled), timeout=30)
        await _admin_patch(chat, admin, mallory, disabled=True)
        # (a guard against hanging forever: the reply is held open until it is stopped)
        await asyncio.wait_for(asyncio.shield(reader), timeout=60)
    finally:
        gate.set()
        reader.cancel()
        await settled(chat)

    assert seen[-1][1] == "done", seen
    assert seen[-1][2]["status"] == "aborted", seen[-1]
    reply = (await stored(chat, started["chatId"]))[-1]
    assert (reply.status, reply.content) == (MessageStatus.ABORTED, "first")


# --- plans: presets ------------------------------------------------------------------------------
async def test_a_preset_naming_a_model_above_the_new_plan_starts_nothing_yet_can_be_tidied(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    await _admin_patch(chat, admin, alice, plan="pro")
    made = await chat.client.post(
        "/api/presets", json={"name": "Big", "model": PRO}, headers=alice["auth"]
    )
    assert made.status_code == 201, made.text
    preset_id = made.json()["id"]
    before = await _done(chat, alice["auth"], model=MODEL, message=f"q {uuid.uuid4()}")
    await _admin_patch(chat, admin, alice, plan="free")
    calls = len(chat.provider.requests)

    start = await chat.client.post(
        "/api/chat/start", json={"presetId": preset_id, "message": "hi"}, headers=alice["auth"]
    )
    into = await chat.client.post(
        "/api/chat/start",
        json={"presetId": preset_id, "message": "hi", "chatId": before["chatId"]},
        headers=alice["auth"],
    )
    again = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": before["chatId"], "presetId": preset_id},
        headers=alice["auth"],
    )  # fmt: skip
    for refused in (start, into, again):
        assert (refused.status_code, refused.json()["code"]) == (403, "model_not_in_plan"), (
            refused.text
        )
    assert len(chat.provider.requests) == calls
    # the caller's own model wins over the preset's: a free model with the preset is served
    chosen = await chat.client.post(
        "/api/chat/start", json={"presetId": preset_id, "message": "hi", "model": MODEL},
        headers=alice["auth"],
    )  # fmt: skip
    assert chosen.status_code == 201, chosen.text
    renamed = await chat.client.patch(
        f"/api/presets/{preset_id}", json={"name": "Was big"}, headers=alice["auth"]
    )
    assert renamed.status_code == 200, renamed.text
    moved = await chat.client.patch(
        f"/api/presets/{preset_id}", json={"model": MODEL}, headers=alice["auth"]
    )
    assert moved.status_code == 200, moved.text
