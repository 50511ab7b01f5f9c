"""Earlier versions of replies through the real app, Postgres and Redis (the provider on
loopback): a regeneration keeps the reply it replaces, readers list a reply's versions, and a
writer switches the chat's last reply back to one of them."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_attach_elsewhere import held_reply
from tests.integration.http.test_chat_flow import Chat, _text
from tests.integration.http.test_chat_regenerate import messages, regenerate
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces

MODEL = "openai/gpt-4o-mini"


async def _answered(chat: Chat, auth: dict[str, str], text: str, **body: Any) -> dict[str, Any]:
    """Start (a new chat, or one more message with ``chatId``) and read the reply, the provider
    scripted to answer ``text``: the start's answer."""
    chat.provider.script(Reply(chunks=openai_pieces([text], usage=(5, 1))))
    started = await chat.start(auth, model=MODEL, **body)
    events = await chat.events(started["sessionId"])
    assert (events[-1][1], _text(events)) == ("done", text)
    return started


async def _regenerated(chat: Chat, auth: dict[str, str], text: str, **body: Any) -> str:
    """Regenerate, the provider scripted to answer ``text``: the new reply's id."""
    chat.provider.script(Reply(chunks=openai_pieces([text], usage=(5, 1))))
    response = await regenerate(chat, auth, **body)
    assert response.status_code == 201, response.text
    events = await chat.events(response.json()["sessionId"])
    assert (events[-1][1], _text(events)) == ("done", text)
    reply_id: str = events[-1][2]["messageId"]
    return reply_id


async def _versions(
    chat: Chat, chat_id: str, reply_id: str, auth: dict[str, str]
) -> list[dict[str, Any]]:
    response = await chat.client.get(
        f"/api/chats/{chat_id}/messages/{reply_id}/versions", headers=auth
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _restore(chat: Chat, chat_id: str, version_id: str, auth: dict[str, str]) -> Any:
    return await chat.client.post(
        f"/api/chats/{chat_id}/messages/{version_id}/restore", headers=auth
    )


async def _three_versions(chat: Chat, auth: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """A chat whose question was answered "Blue.", then (edited) "Green.", then "Red.": the
    start's answer and the three replies' ids in that order."""
    started = await _answered(chat, auth, "Blue.", message="Which colour?")
    blue = (await messages(chat, started["chatId"], auth))[1]["id"]
    green = await _regenerated(
        chat, auth, "Green.", chatId=started["chatId"], message="Which colour, really?"
    )
    red = await _regenerated(chat, auth, "Red.", chatId=started["chatId"])
    return started, [blue, green, red]


async def blue_then_red(
    chat: Chat, auth: dict[str, str], **start: Any
) -> tuple[dict[str, Any], str, str]:
    """A chat whose question "Which colour?" was answered "Blue.", then regenerated "Red.": the
    start's answer, the "Blue." reply's id (now an earlier version) and the "Red." one's."""
    started = await _answered(chat, auth, "Blue.", message="Which colour?", **start)
    blue = (await messages(chat, started["chatId"], auth))[1]["id"]
    red = await _regenerated(chat, auth, "Red.", chatId=started["chatId"])
    return started, blue, red


def _is_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_a_regeneration_keeps_the_replaced_reply_as_an_earlier_version(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]

    question, reply = await messages(chat, chat_id, alice["auth"])
    assert (question["content"], question["earlierVersions"]) == ("Which colour, really?", 0)
    assert (reply["id"], reply["content"], reply["earlierVersions"]) == (red, "Red.", 2)
    versions = await _versions(chat, chat_id, red, alice["auth"])
    assert [(v["id"], v["content"], v["question"]) for v in versions] == [
        (blue, "Blue.", "Which colour?"),
        (green, "Green.", "Which colour, really?"),
    ]
    for version in versions:
        assert (version["role"], version["status"], version["model"]) == (
            "assistant", "complete", MODEL,
        )  # fmt: skip
        assert version["usage"] == {
            "promptTokens": 5, "completionTokens": 1, "cachedPromptTokens": 0,
            "cacheWriteTokens": 0, "reasoningTokens": 0,
        }  # fmt: skip
        assert (version["sessionId"], version["feedback"], version["earlierVersions"]) == (
            None, None, 0,
        )  # fmt: skip
        assert version["replacedAt"] >= version["createdAt"]
    assert versions[0]["replacedAt"] < versions[1]["replacedAt"]


async def test_a_restored_version_is_the_last_reply_again_and_the_context_follows_it(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]

    restored = await _restore(chat, chat_id, blue, alice["auth"])

    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["messages"] == await messages(chat, chat_id, alice["auth"])
    question, reply = body["messages"]
    # the question takes back the text the restored reply answered
    assert question["content"] == "Which colour?"
    assert (reply["id"], reply["content"], reply["earlierVersions"]) == (blue, "Blue.", 2)
    versions = await _versions(chat, chat_id, blue, alice["auth"])
    assert [(v["id"], v["question"]) for v in versions] == [
        (green, "Which colour, really?"),
        (red, "Which colour, really?"),
    ]

    # the next message is answered after the restored exchange
    await _answered(chat, alice["auth"], "Because.", message="Why?", chatId=chat_id)
    sent = chat.provider.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent[-3:]] == [
        ("user", "Which colour?"), ("assistant", "Blue."), ("user", "Why?"),
    ]  # fmt: skip


async def test_restoring_switches_back_and_forth_and_the_last_reply_is_a_no_op(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]

    for target, question in ((green, "Which colour, really?"), (blue, "Which colour?")):
        response = await _restore(chat, chat_id, target, alice["auth"])
        assert response.status_code == 200, response.text
        asked, reply = response.json()["messages"]
        assert (asked["content"], reply["id"]) == (question, target)
    again = await _restore(chat, chat_id, blue, alice["auth"])  # already the last reply
    assert again.status_code == 200, again.text
    assert [m["id"] for m in again.json()["messages"]][1] == blue
    assert {v["id"] for v in await _versions(chat, chat_id, blue, alice["auth"])} == {green, red}


async def test_only_the_last_replys_versions_can_be_restored(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    await _answered(chat, alice["auth"], "Because.", message="Why?", chatId=chat_id)
    before = await messages(chat, chat_id, alice["auth"])

    _is_problem(await _restore(chat, chat_id, blue, alice["auth"]), 409, "not_the_last_reply")

    assert await messages(chat, chat_id, alice["auth"]) == before
    # the earlier reply's versions are still listed
    versions = await _versions(chat, chat_id, red, alice["auth"])
    assert [v["id"] for v in versions] == [blue, green]


async def test_a_reply_being_generated_cannot_be_switched_away(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "Blue.", message=f"colour {uuid.uuid4()}")
    blue = (await messages(chat, started["chatId"], alice["auth"]))[1]["id"]
    gate = held_reply(chat)
    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    assert again.status_code == 201, again.text

    refused = await _restore(chat, started["chatId"], blue, alice["auth"])

    _is_problem(refused, 409, "reply_in_progress")
    gate.set()
    events = await chat.events(again.json()["sessionId"])
    assert events[-1][1] == "done"
    _, reply = await messages(chat, started["chatId"], alice["auth"])
    assert (reply["content"], reply["earlierVersions"]) == ("first rest", 1)


async def test_readers_list_versions_writers_restore_and_others_get_404(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    carol = await chat.world.register("carol")
    project_id = await team_project(chat, alice, carol, "viewer")
    started, blue, red = await blue_then_red(chat, alice["auth"], projectId=project_id)
    chat_id = started["chatId"]
    other = await _answered(chat, bob["auth"], "Mine.", message="Bob's question")
    bobs_reply = (await messages(chat, other["chatId"], bob["auth"]))[1]["id"]

    assert [v["id"] for v in await _versions(chat, chat_id, red, carol["auth"])] == [blue]
    _is_problem(await _restore(chat, chat_id, blue, carol["auth"]), 403, "permission_denied")
    url = f"/api/chats/{chat_id}/messages/{red}/versions"
    _is_problem(await chat.client.get(url, headers=bob["auth"]), 404, "chat_not_found")
    _is_problem(await _restore(chat, chat_id, blue, bob["auth"]), 404, "chat_not_found")
    # ids that are not a reply of this conversation, or not an earlier version here
    for reply_id in (blue, started["messageId"], bobs_reply, str(uuid.uuid4())):
        response = await chat.client.get(
            f"/api/chats/{chat_id}/messages/{reply_id}/versions", headers=alice["auth"]
        )
        _is_problem(response, 404, "message_not_found")
    for version_id in (started["messageId"], bobs_reply, str(uuid.uuid4())):
        _is_problem(
            await _restore(chat, chat_id, version_id, alice["auth"]), 404, "message_not_found"
        )
    assert [m["id"] for m in await messages(chat, chat_id, alice["auth"])][1] == red


async def test_earlier_versions_stay_out_of_forks_shares_exports_and_search(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    word = f"okapi{uuid.uuid4().hex[:10]}"
    started = await _answered(chat, alice["auth"], f"An {word} grazes.", message="Which animal?")
    chat_id = started["chatId"]
    await _regenerated(chat, alice["auth"], "A giraffe grazes.", chatId=chat_id)

    found = await chat.client.get("/api/chats/search", params={"q": word}, headers=alice["auth"])
    assert found.status_code == 200, found.text
    assert found.json() == []
    exported = await chat.client.get(f"/api/chats/{chat_id}/export", headers=alice["auth"])
    assert exported.status_code == 200
    assert word not in exported.text
    assert "giraffe" in exported.text
    forked = await chat.client.post(f"/api/chats/{chat_id}/fork", json={}, headers=alice["auth"])
    assert forked.status_code == 201, forked.text
    fork_messages = await messages(chat, forked.json()["id"], alice["auth"])
    assert [m["content"] for m in fork_messages] == ["Which animal?", "A giraffe grazes."]
    assert fork_messages[1]["earlierVersions"] == 0
    shared = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=alice["auth"])
    assert shared.status_code == 201, shared.text
    public = await chat.client.get(shared.json()["url"])
    assert public.status_code == 200
    assert word not in public.text
    assert "giraffe" in public.text
