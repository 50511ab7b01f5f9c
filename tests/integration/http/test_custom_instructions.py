"""Custom instructions through the real app, Postgres and Redis, with a provider on loopback:
set on the account, sent as the system message of each new chat (copied when it starts)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.http.test_chat_flow import Chat

MODEL = "openai/gpt-4o-mini"


async def _sent(chat: Chat, auth: dict[str, str], **body: Any) -> tuple[str, list[Any]]:
    """Start (a unique message: the shared cache may remember others), read the reply; the
    chat's id and the messages the provider received."""
    started = await chat.start(auth, model=MODEL, **{"message": f"Hi {uuid.uuid4()}", **body})
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started["chatId"], chat.provider.requests[-1].body["messages"]


async def test_custom_instructions_open_each_new_chat_and_stay_with_the_chats_made(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    auth = alice["auth"]
    assert alice["user"]["customInstructions"] is None
    patched = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "  Answer in French.  "}, headers=auth
    )
    assert (patched.status_code, patched.json()["customInstructions"]) == (200, "Answer in French.")
    me = await chat.client.get("/api/auth/me", headers=auth)
    assert me.json()["customInstructions"] == "Answer in French."

    first, sent = await _sent(chat, auth)
    assert sent[0] == {"role": "system", "content": "Answer in French."}
    assert [m["role"] for m in sent] == ["system", "user"]
    shown = (await chat.client.get(f"/api/chats/{first}", headers=auth)).json()
    assert shown["systemPrompt"] == "Answer in French."

    _, own = await _sent(chat, auth, systemPrompt="Answer in German.")
    assert own[0] == {"role": "system", "content": "Answer in German."}
    _, opted_out = await _sent(chat, auth, systemPrompt="")
    assert [m["role"] for m in opted_out] == ["user"]
    _, bobs = await _sent(chat, bob["auth"])
    assert [m["role"] for m in bobs] == ["user"]

    # an API key's caller is authenticated by another query: it carries the flag too
    key = await chat.client.post("/api/keys", json={"name": "ci"}, headers=auth)
    assert key.status_code == 201, key.text
    _, by_key = await _sent(chat, {"X-API-Key": key.json()["secret"]})
    assert by_key[0] == {"role": "system", "content": "Answer in French."}

    await chat.client.patch("/api/auth/me", json={"customInstructions": "Be terse."}, headers=auth)
    _, in_first = await _sent(chat, auth, chatId=first)
    assert in_first[0] == {"role": "system", "content": "Answer in French."}
    _, later = await _sent(chat, auth)
    assert later[0] == {"role": "system", "content": "Be terse."}

    cleared = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": None}, headers=auth
    )
    assert cleared.json()["customInstructions"] is None
    _, after = await _sent(chat, auth)
    assert [m["role"] for m in after] == ["user"]


async def test_custom_instructions_too_long_are_a_422_problem(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "x" * 20_001}, headers=alice["auth"]
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "customInstructions"
