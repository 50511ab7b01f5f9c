"""POST /api/chat/regenerate through the real app, Postgres and Redis, the provider on loopback."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.integration.http.test_chat_attach_elsewhere import held_reply, team_project
from tests.integration.http.test_chat_flow import Chat, _read_events, _text
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces

MODEL = "openai/gpt-4o-mini"


async def regenerate(chat: Chat, auth: dict[str, str], **body: Any) -> Any:
    return await chat.client.post("/api/chat/regenerate", json=body, headers=auth)


async def messages(chat: Chat, chat_id: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = await chat.client.get(f"/api/chats/{chat_id}", headers=auth)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


async def test_the_last_reply_is_answered_again_and_replaced_never_from_the_cache(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    prompt = f"Say hello {uuid.uuid4()}"
    started = await chat.start(alice["auth"], model=MODEL, message=prompt, cache=True)
    first = await chat.events(started["sessionId"])
    old_id = first[-1][2]["messageId"]
    calls = len(chat.provider.requests)
    chat.provider.script(Reply(chunks=openai_pieces(["Hi", " again"], usage=(9, 2))))

    response = await regenerate(chat, alice["auth"], chatId=started["chatId"])

    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["chatId"], answer["messageId"]) == (started["chatId"], started["messageId"])
    assert answer["replacedMessageId"] == old_id
    events = await chat.events(answer["sessionId"])
    assert _text(events) == "Hi again"
    assert (events[-1][1], events[-1][2]["cached"]) == ("done", False)
    assert len(chat.provider.requests) == calls + 1  # asked again, not served from the cache
    assert (
        chat.provider.requests[-1].body["messages"] == chat.provider.requests[-2].body["messages"]
    )
    question, reply = await messages(chat, started["chatId"], alice["auth"])
    assert (question["id"], question["content"]) == (started["messageId"], prompt)
    assert reply["id"] == events[-1][2]["messageId"] != old_id
    assert (reply["status"], reply["content"]) == ("complete", "Hi again")


async def test_a_regeneration_asking_for_events_answers_the_reply_in_the_same_request(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model="dev/echo", message="one two")
    await chat.events(started["sessionId"])
    headers = {**alice["auth"], "Accept": "text/event-stream"}

    async with chat.client.stream(
        "POST", "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=headers
    ) as response:
        assert response.status_code == 201, await response.aread()
        events = await _read_events(response, None)

    assert events[0][1] == "session"
    assert events[0][2]["messageId"] == started["messageId"]
    assert "replacedMessageId" in events[0][2]
    assert _text([(i, n, d) for i, n, d in events if n != "session"]) == "one two"
    assert events[-1][1] == "done"


async def test_a_reply_still_being_generated_is_a_409_and_is_kept(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"held {uuid.uuid4()}")

    response = await regenerate(chat, alice["auth"], chatId=started["chatId"])

    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "reply_in_progress"
    gate.set()
    events = await chat.events(started["sessionId"])
    assert (events[-1][1], _text(events)) == ("done", "first rest")


async def test_only_writers_of_the_chat_may_regenerate_and_bad_bodies_are_refused(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    carol = await chat.world.register("carol")
    project_id, _ = await team_project(chat, alice, carol, "viewer")
    started = await chat.start(
        alice["auth"], model="dev/echo", message="private", projectId=project_id
    )
    await chat.events(started["sessionId"])
    before = await messages(chat, started["chatId"], alice["auth"])

    stranger = await regenerate(chat, bob["auth"], chatId=started["chatId"])
    viewer = await regenerate(chat, carol["auth"], chatId=started["chatId"])
    unknown_model = await regenerate(chat, alice["auth"], chatId=started["chatId"], model="x/y")
    not_a_uuid = await regenerate(chat, alice["auth"], chatId="nope")

    assert (stranger.status_code, stranger.json()["code"]) == (404, "chat_not_found")
    assert (viewer.status_code, viewer.json()["code"]) == (403, "permission_denied")
    assert unknown_model.status_code == 404
    assert not_a_uuid.status_code == 400
    assert await messages(chat, started["chatId"], alice["auth"]) == before
    await asyncio.sleep(0)  # (nothing was launched: no reply to wait for)


async def test_the_message_can_be_edited_before_it_is_answered_again(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model="dev/echo", message="first words")
    await chat.events(started["sessionId"])

    response = await regenerate(chat, alice["auth"], chatId=started["chatId"], message="new words")

    assert response.status_code == 201, response.text
    events = await chat.events(response.json()["sessionId"])
    assert _text(events) == "new words"  # the echo model answers the edited message
    question, reply = await messages(chat, started["chatId"], alice["auth"])
    assert (question["id"], question["content"]) == (started["messageId"], "new words")
    assert (reply["status"], reply["content"]) == ("complete", "new words")
    empty = await regenerate(chat, alice["auth"], chatId=started["chatId"], message="")
    assert empty.status_code == 400  # (the schema: at least one character)


async def test_of_two_regenerations_at_once_one_wins_and_the_chat_keeps_one_reply(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model="dev/echo", message="race me")
    await chat.events(started["sessionId"])

    for _ in range(5):  # (the two requests' reads and writes interleave differently each time)
        both = await asyncio.gather(
            *(regenerate(chat, alice["auth"], chatId=started["chatId"]) for _ in range(2))
        )
        # They run one after the other (the chat is locked): the second finds the first's reply
        # still being generated (409), or already finished (the echo is quick) and replaces it.
        statuses = sorted(r.status_code for r in both)
        assert statuses in ([201, 201], [201, 409]), [r.text for r in both]
        for response in both:
            if response.status_code == 409:
                assert response.json()["code"] == "reply_in_progress"
            else:
                await chat.events(response.json()["sessionId"])
        found = await messages(chat, started["chatId"], alice["auth"])
        assert [m["role"] for m in found] == ["user", "assistant"]
        assert found[1]["status"] == "complete"
