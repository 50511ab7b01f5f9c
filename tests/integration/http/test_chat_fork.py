"""POST /api/chats/{id}/fork through the real app, Postgres and Redis, the provider on loopback."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.http.test_chat_attach_elsewhere import held_reply, team_project
from tests.integration.http.test_chat_flow import Chat, _text
from tests.integration.http.test_chat_regenerate import messages, regenerate

MODEL = "openai/gpt-4o-mini"
COPIED = ("role", "content", "status", "model", "provider", "usage", "costUsd", "createdAt")


async def fork(chat: Chat, chat_id: str, auth: dict[str, str], **body: Any) -> Any:
    return await chat.client.post(f"/api/chats/{chat_id}/fork", json=body or None, headers=auth)


async def conversation(chat: Chat, auth: dict[str, str], *turns: str, **start: Any) -> str:
    """A chat of ``turns`` questions, each answered by dev/echo (``start``: more fields of the
    first start); its id."""
    chat_id: str | None = None
    for turn in turns:
        more = start if chat_id is None else {"chatId": chat_id}
        started = await chat.start(auth, model="dev/echo", message=turn, **more)
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        chat_id = started["chatId"]
    assert chat_id is not None
    return chat_id


def _copied(message: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(message[field] for field in COPIED)


async def test_a_fork_copies_the_conversation_up_to_a_message_and_leaves_the_chat_as_it_was(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(
        chat, alice["auth"], "first question", "second question", systemPrompt="Be brief."
    )
    original = await messages(chat, chat_id, alice["auth"])
    first_reply = original[1]

    response = await fork(chat, chat_id, alice["auth"], messageId=first_reply["id"])

    assert response.status_code == 201, response.text
    forked = response.json()
    assert forked["id"] != chat_id
    assert forked["systemPrompt"] == "Be brief."
    assert forked["title"] == "first question"
    assert [_copied(m) for m in forked["messages"]] == [_copied(m) for m in original[:2]]
    assert not {m["id"] for m in forked["messages"]} & {m["id"] for m in original}
    assert [m["feedback"] for m in forked["messages"]] == [None, None]
    assert await messages(chat, chat_id, alice["auth"]) == original
    read = await chat.client.get(f"/api/chats/{forked['id']}", headers=alice["auth"])
    assert read.json() == forked
    listed = await chat.client.get("/api/chats", headers=alice["auth"])
    assert listed.json()["items"][0]["id"] == forked["id"]  # newest first


async def test_the_conversation_goes_on_in_the_fork_with_the_copied_context(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], f"alpha {uuid.uuid4()}", "beta question")
    original = await messages(chat, chat_id, alice["auth"])
    forked = (await fork(chat, chat_id, alice["auth"], messageId=original[1]["id"])).json()
    calls = len(chat.provider.requests)

    started = await chat.start(
        alice["auth"], model=MODEL, message="gamma question", chatId=forked["id"], cache=False
    )
    events = await chat.events(started["sessionId"])

    assert events[-1][1] == "done"
    sent = chat.provider.requests[calls].body["messages"]
    assert [m["content"] for m in sent] == [original[0]["content"], original[1]["content"],
                                            "gamma question"]  # fmt: skip
    assert len(await messages(chat, chat_id, alice["auth"])) == 4  # the original: unchanged


async def test_an_earlier_question_is_asked_again_differently_by_forking_then_regenerating(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "what is one", "what is two")
    original = await messages(chat, chat_id, alice["auth"])
    forked = (await fork(chat, chat_id, alice["auth"], messageId=original[1]["id"])).json()

    again = await regenerate(chat, alice["auth"], chatId=forked["id"], message="what is uno")

    assert again.status_code == 201, again.text
    assert _text(await chat.events(again.json()["sessionId"])) == "what is uno"
    contents = [m["content"] for m in await messages(chat, forked["id"], alice["auth"])]
    assert contents == ["what is uno", "what is uno"]
    assert [m["content"] for m in await messages(chat, chat_id, alice["auth"])] == [
        "what is one", "what is one", "what is two", "what is two"
    ]  # fmt: skip


async def test_without_a_body_the_whole_chat_is_forked_and_a_title_can_be_given(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "one", "two")

    whole = await chat.client.post(f"/api/chats/{chat_id}/fork", headers=alice["auth"])
    titled = await fork(chat, chat_id, alice["auth"], title="  My   branch ")

    assert whole.status_code == 201, whole.text
    assert [m["content"] for m in whole.json()["messages"]] == ["one", "one", "two", "two"]
    assert titled.json()["title"] == "My branch"
    assert len(titled.json()["messages"]) == 4


async def test_a_reader_forks_into_their_own_project_and_the_member_rules_hold(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    carol = await chat.world.register("carol")
    project_id, _ = await team_project(chat, alice, carol, "viewer")
    chat_id = await conversation(chat, alice["auth"], "team question", projectId=project_id)

    by_viewer = await fork(chat, chat_id, carol["auth"])
    by_stranger = await fork(chat, chat_id, bob["auth"])
    viewer_into_team = await fork(chat, chat_id, carol["auth"], projectId=project_id)

    assert by_viewer.status_code == 201, by_viewer.text
    assert by_viewer.json()["projectId"] != project_id  # carol's personal project
    mine = await chat.client.get("/api/chats", headers=carol["auth"])
    assert [c["id"] for c in mine.json()["items"]] == [by_viewer.json()["id"]]
    assert (by_stranger.status_code, by_stranger.json()["code"]) == (404, "chat_not_found")
    assert (viewer_into_team.status_code, viewer_into_team.json()["code"]) == (
        403, "permission_denied"
    )  # fmt: skip


async def test_a_reply_still_being_generated_is_left_out_or_refused_when_named(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"held {uuid.uuid4()}")
    reply_id = (await messages(chat, started["chatId"], alice["auth"]))[1]["id"]

    whole = await fork(chat, started["chatId"], alice["auth"])
    named = await fork(chat, started["chatId"], alice["auth"], messageId=reply_id)
    gate.set()
    await chat.events(started["sessionId"])

    assert whole.status_code == 201, whole.text
    assert [m["role"] for m in whole.json()["messages"]] == ["user"]
    assert (named.status_code, named.json()["code"]) == (409, "reply_in_progress")


async def test_bad_forks_are_refused_with_a_problem_and_write_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "one")
    other_id = await conversation(chat, alice["auth"], "other")
    other_message = (await messages(chat, other_id, alice["auth"]))[0]["id"]
    before = (await chat.client.get("/api/chats", headers=alice["auth"])).json()

    foreign = await fork(chat, chat_id, alice["auth"], messageId=other_message)
    unknown = await fork(chat, chat_id, alice["auth"], messageId=str(uuid.uuid4()))
    blank_title = await fork(chat, chat_id, alice["auth"], title="   ")
    long_title = await fork(chat, chat_id, alice["auth"], title="x" * 121)
    unknown_field = await fork(chat, chat_id, alice["auth"], messageID=other_message)
    no_chat = await fork(chat, str(uuid.uuid4()), alice["auth"])

    for response, status, field in [
        (foreign, 422, "messageId"), (unknown, 422, "messageId"), (blank_title, 422, "title"),
        (long_title, 422, "title"),
    ]:  # fmt: skip
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == field
    assert unknown_field.status_code == 400
    assert "messageID" in str(unknown_field.json()["errors"])
    assert (no_chat.status_code, no_chat.json()["code"]) == (404, "chat_not_found")
    assert (await chat.client.get("/api/chats", headers=alice["auth"])).json() == before


async def test_a_fork_out_of_someone_elses_personal_project_leaves_its_system_prompt_behind(
    chat: Chat,
) -> None:
    """Alice added Bob to her personal project; a chat there may carry her private custom
    instructions as its system prompt: Bob's fork into his own project leaves it behind, while
    a fork within that project keeps it."""
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    chat_id = await conversation(chat, alice["auth"], "question", systemPrompt="Alice's own.")
    personal = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()
    added = await chat.client.post(
        f"/api/projects/{personal['projectId']}/members",
        json={"email": bob["email"], "role": "editor"},
        headers=alice["auth"],
    )
    assert added.status_code == 201, added.text

    out = await fork(chat, chat_id, bob["auth"])
    within = await fork(chat, chat_id, bob["auth"], projectId=personal["projectId"])

    assert out.status_code == 201, out.text
    assert out.json()["projectId"] != personal["projectId"]
    assert out.json()["systemPrompt"] is None
    assert within.status_code == 201, within.text
    assert within.json()["systemPrompt"] == "Alice's own."
