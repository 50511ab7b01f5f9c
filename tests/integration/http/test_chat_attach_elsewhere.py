"""Another device finds a reply still being generated on GET /api/chats/{id} and attaches to it,
through the real app, container, Postgres and Redis, with the provider on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces

MODEL = "openai/gpt-4o-mini"


def held_reply(chat: Chat) -> asyncio.Event:
    """Script the provider to send the first token, then wait for the returned gate."""
    gate = asyncio.Event()
    pieces = openai_pieces(["first", " rest"], usage=(9, 2))
    chat.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2))
    return gate


async def team_project(
    chat: Chat, owner: dict[str, Any], member: dict[str, Any], role: str
) -> tuple[str, str]:
    """A project of ``owner``'s with ``member`` in it as ``role``: (project id, member's id)."""
    created = await chat.client.post("/api/projects", json={"name": "Team"}, headers=owner["auth"])
    project_id: str = created.json()["id"]
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": member["email"], "role": role},
        headers=owner["auth"],
    )
    assert added.status_code == 201, added.text
    return project_id, added.json()["userId"]


async def read_chat(chat: Chat, chat_id: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = await chat.client.get(f"/api/chats/{chat_id}", headers=auth)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def attach_and_release(
    chat: Chat, session_id: str, auth: dict[str, str], gate: asyncio.Event
) -> list[tuple[str, dict[str, Any]]]:
    """Stream the reply as another client; its first token arrives while the provider is held,
    and only then is the provider let go on: the client is attached to the live reply."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    url = f"/api/chat/stream?sessionId={session_id}"
    async with chat.client.stream("GET", url, headers=auth) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
                if name == "token":
                    gate.set()
                if name in ("done", "error"):
                    break
    return events


def _text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(data["delta"] for name, data in events if name == "token")


async def test_another_device_finds_a_reply_still_being_generated_and_attaches_to_it(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"held {uuid.uuid4()}")
    chat_id = started["chatId"]

    question, reply = await read_chat(chat, chat_id, alice["auth"])  # the other device
    assert (question["role"], question["sessionId"]) == ("user", None)
    assert reply["role"] == "assistant"
    assert reply["status"] in ("pending", "streaming")
    assert reply["sessionId"] not in (None, started["sessionId"])  # a reader pass for alice
    assert started["sessionId"] not in reply["sessionId"]
    stranger = await chat.client.get(f"/api/chats/{chat_id}", headers=bob["auth"])
    assert stranger.status_code == 404
    assert started["sessionId"] not in stranger.text

    events = await attach_and_release(chat, reply["sessionId"], alice["auth"], gate)

    assert _text(events) == "first rest"
    assert events[-1][0] == "done"
    assert events[-1][1]["status"] == "complete"
    question, reply = await read_chat(chat, chat_id, alice["auth"])
    assert (reply["status"], reply["content"]) == ("complete", "first rest")
    assert [m["sessionId"] for m in (question, reply)] == [None, None]


async def test_a_project_member_who_may_read_the_chat_sees_the_session_and_streams_it(
    chat: Chat,
) -> None:
    alice, carol = await chat.world.register("alice"), await chat.world.register("carol")
    bob = await chat.world.register("bob")
    project_id, _ = await team_project(chat, alice, carol, "viewer")
    gate = held_reply(chat)
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"team {uuid.uuid4()}", projectId=project_id
    )

    _, reply = await read_chat(chat, started["chatId"], carol["auth"])
    assert reply["sessionId"] not in (None, started["sessionId"])  # carol's reader pass
    with_bobs_header = await chat.client.get(
        f"/api/chat/stream?sessionId={reply['sessionId']}", headers=bob["auth"]
    )
    assert with_bobs_header.status_code == 404  # a pass admits only its reader
    not_member = await chat.client.get(f"/api/chats/{started['chatId']}", headers=bob["auth"])
    assert not_member.status_code == 404

    events = await attach_and_release(chat, reply["sessionId"], carol["auth"], gate)

    assert _text(events) == "first rest"
    assert events[-1][0] == "done"
    _, reply = await read_chat(chat, started["chatId"], carol["auth"])
    assert (reply["status"], reply["sessionId"]) == ("complete", None)


async def test_a_member_removed_after_reading_the_chat_cannot_use_their_pass(
    chat: Chat,
) -> None:
    alice, carol = await chat.world.register("alice"), await chat.world.register("carol")
    project_id, carol_id = await team_project(chat, alice, carol, "editor")
    gate = held_reply(chat)
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"team {uuid.uuid4()}", projectId=project_id
    )
    _, reply = await read_chat(chat, started["chatId"], carol["auth"])
    carols_pass = reply["sessionId"]
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{carol_id}", headers=alice["auth"]
    )
    assert removed.status_code == 204, removed.text

    for headers in ({}, carol["auth"]):  # the EventSource way, and with her own token
        refused = await chat.client.get(
            f"/api/chat/stream?sessionId={carols_pass}", headers=headers
        )
        assert refused.status_code == 404, refused.text
        assert refused.json()["code"] == "chat_session_not_found"
    stop = await chat.client.post(f"/api/chat/sessions/{carols_pass}/stop", headers=carol["auth"])
    assert stop.status_code == 404

    _, own = await read_chat(chat, started["chatId"], alice["auth"])  # alice stops by her pass
    stopped = await chat.client.post(
        f"/api/chat/sessions/{own['sessionId']}/stop", headers=alice["auth"]
    )
    assert stopped.status_code == 202, stopped.text
    events = await attach_and_release(chat, started["sessionId"], alice["auth"], asyncio.Event())
    assert (events[-1][0], events[-1][1]["status"]) == ("done", "aborted")  # held, then stopped
    assert _text(events) == "first"
    assert not gate.is_set()
