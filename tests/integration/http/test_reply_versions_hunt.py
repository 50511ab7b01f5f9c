"""Hunt: earlier versions of replies (commit e91bcf6) through the real app, Postgres and Redis,
the provider on loopback.

What was hunted: how regeneration, restore, new messages, edits, the 20-version cap, ratings,
forks, shares, exports, search, the prompt cache, usage, imports and permissions interact with
earlier versions, and whether concurrent writers (asyncio.gather on one chat, whose row the
handlers lock) lose data or fail with a 500. Each test asserts the behaviour the README and the
handlers' docstrings promise. Kept as a regression suite: one test found a defect (at the cap,
regenerating a restored reply, which keeps its old creation time, dropped it at once), fixed
since: the reply just replaced is always kept.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_attach_elsewhere import held_reply
from tests.integration.http.test_chat_flow import Chat, _text
from tests.integration.http.test_chat_regenerate import messages, regenerate
from tests.integration.http.test_chat_reply_versions import (
    _answered,
    _regenerated,
    _restore,
    _three_versions,
    _versions,
    blue_then_red,
)
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces

MODEL = "openai/gpt-4o-mini"


def _problem(response: Any, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), (
        response.headers["content-type"],
        response.text,
    )
    body = response.json()
    assert isinstance(body.get("code"), str), body
    assert body["code"], body
    if code is not None:
        assert body["code"] == code, body


async def _rate(chat: Chat, chat_id: str, reply_id: str, auth: dict[str, str], rating: str) -> Any:
    return await chat.client.put(
        f"/api/chats/{chat_id}/messages/{reply_id}/feedback",
        json={"rating": rating},
        headers=auth,
    )


async def _all_replies(chat: Chat, chat_id: str, auth: dict[str, str]) -> set[str]:
    """Every reply of a chat ending with one exchange: the last reply and its versions."""
    found = await messages(chat, chat_id, auth)
    last = found[-1]
    return {last["id"], *(v["id"] for v in await _versions(chat, chat_id, last["id"], auth))}


# --- problem bodies and ids ------------------------------------------------------------------


async def test_ids_that_are_not_uuids_are_problems_with_a_code(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, _green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    for url in (
        f"/api/chats/{chat_id}/messages/not-a-uuid/versions",
        f"/api/chats/not-a-uuid/messages/{red}/versions",
    ):
        _problem(await chat.client.get(url, headers=alice["auth"]), 404)
    for url in (
        f"/api/chats/{chat_id}/messages/not-a-uuid/restore",
        f"/api/chats/not-a-uuid/messages/{blue}/restore",
    ):
        _problem(await chat.client.post(url, headers=alice["auth"]), 404)
    # the wrong method on the new routes
    wrong = await chat.client.get(
        f"/api/chats/{chat_id}/messages/{blue}/restore", headers=alice["auth"]
    )
    _problem(wrong, 405)
    unauthenticated = await _restore(chat, chat_id, blue, {})
    _problem(unauthenticated, 401)
    assert [m["id"] for m in await messages(chat, chat_id, alice["auth"])][1] == red


# --- the cap of 20 earlier versions ----------------------------------------------------------


async def test_the_21st_regeneration_drops_the_oldest_version_with_its_rating_not_its_usage(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "v0", message=f"Count {uuid.uuid4()}")
    chat_id = started["chatId"]
    ids = [(await messages(chat, chat_id, alice["auth"]))[1]["id"]]
    assert (await _rate(chat, chat_id, ids[0], alice["auth"], "up")).status_code == 200
    ids.append(await _regenerated(chat, alice["auth"], "v1", chatId=chat_id))
    assert (await _rate(chat, chat_id, ids[1], alice["auth"], "down")).status_code == 200
    for n in range(2, 22):
        ids.append(await _regenerated(chat, alice["auth"], f"v{n}", chatId=chat_id))

    _, reply = await messages(chat, chat_id, alice["auth"])
    assert (reply["id"], reply["content"], reply["earlierVersions"]) == (ids[-1], "v21", 20)
    versions = await _versions(chat, chat_id, ids[-1], alice["auth"])
    assert [v["id"] for v in versions] == ids[1:21]  # v0 dropped, the oldest
    assert versions[0]["feedback"]["rating"] == "down"
    # the dropped reply is gone: it cannot be rated or restored
    _problem(await _rate(chat, chat_id, ids[0], alice["auth"], "up"), 404, "message_not_found")
    _problem(await _restore(chat, chat_id, ids[0], alice["auth"]), 404, "message_not_found")
    # what was spent stays counted: 22 replies of 5 + 1 tokens, the dropped one's too
    usage = (await chat.client.get("/api/usage", headers=alice["auth"])).json()
    assert (usage["total"]["requests"], usage["total"]["promptTokens"]) == (22, 22 * 5)


async def test_at_the_cap_the_reply_a_regeneration_replaces_is_never_the_one_dropped(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "v0", message=f"Cap {uuid.uuid4()}")
    chat_id = started["chatId"]
    ids = [(await messages(chat, chat_id, alice["auth"]))[1]["id"]]
    for n in range(1, 21):
        ids.append(await _regenerated(chat, alice["auth"], f"v{n}", chatId=chat_id))
    assert len(await _versions(chat, chat_id, ids[-1], alice["auth"])) == 20
    # the user goes back to the first answer, rates it, then asks for another one
    restored = await _restore(chat, chat_id, ids[0], alice["auth"])
    assert restored.status_code == 200, restored.text
    assert (await _rate(chat, chat_id, ids[0], alice["auth"], "up")).status_code == 200
    again = await regenerate(chat, alice["auth"], chatId=chat_id)
    assert again.status_code == 201, again.text
    assert again.json()["replacedMessageId"] == ids[0]
    await chat.events(again.json()["sessionId"])
    _, newest = await messages(chat, chat_id, alice["auth"])

    kept = {v["id"]: v for v in await _versions(chat, chat_id, newest["id"], alice["auth"])}
    assert len(kept) == 20
    assert ids[0] in kept  # the reply just replaced is kept as an earlier version
    assert kept[ids[0]]["feedback"]["rating"] == "up"
    assert ids[1] not in kept  # the oldest other version goes instead


# --- races on one chat (its row is locked by each writer) ------------------------------------


async def test_a_restore_racing_a_regeneration_loses_no_reply_and_never_fails(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    gate = held_reply(chat)  # the new reply is still being written until the gate opens

    restored, regenerated = await asyncio.gather(
        _restore(chat, chat_id, blue, alice["auth"]),
        regenerate(chat, alice["auth"], chatId=chat_id),
    )

    gate.set()
    assert regenerated.status_code == 201, regenerated.text
    events = await chat.events(regenerated.json()["sessionId"])
    assert (events[-1][1], _text(events)) == ("done", "first rest")
    violet = events[-1][2]["messageId"]
    if restored.status_code == 200:  # restored first: the regeneration replaced Blue
        assert regenerated.json()["replacedMessageId"] == blue
    else:  # regenerated first: the restore found a reply being written
        _problem(restored, 409, "reply_in_progress")
        assert regenerated.json()["replacedMessageId"] == red
    _, reply = await messages(chat, chat_id, alice["auth"])
    assert (reply["id"], reply["earlierVersions"]) == (violet, 3)
    assert await _all_replies(chat, chat_id, alice["auth"]) == {blue, green, red, violet}


async def test_a_restore_racing_a_new_message_keeps_the_conversation_consistent(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, _green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    chat.provider.script(Reply(chunks=openai_pieces(["Because."], usage=(5, 1))))

    async def send() -> Any:
        return await chat.client.post(
            "/api/chat/start",
            json={"model": MODEL, "message": "Why?", "chatId": chat_id},
            headers=alice["auth"],
        )

    restored, sent = await asyncio.gather(_restore(chat, chat_id, blue, alice["auth"]), send())

    assert sent.status_code == 201, sent.text
    events = await chat.events(sent.json()["sessionId"])
    assert events[-1][1] == "done"
    context = [(m["role"], m["content"]) for m in chat.provider.requests[-1].body["messages"]]
    found = await messages(chat, chat_id, alice["auth"])
    if restored.status_code == 200:  # restored first: the new message follows Blue
        assert context[-3:] == [
            ("user", "Which colour?"), ("assistant", "Blue."), ("user", "Why?"),
        ]  # fmt: skip
        assert [m["id"] for m in found][1] == blue
    else:  # the message first: Red's exchange is no longer the last
        _problem(restored, 409)
        assert restored.json()["code"] in {"reply_in_progress", "not_the_last_reply"}
        assert context[-3:] == [
            ("user", "Which colour, really?"), ("assistant", "Red."), ("user", "Why?"),
        ]  # fmt: skip
        assert [m["id"] for m in found][1] == red
    assert [(m["role"], m["content"]) for m in found][2:] == [
        ("user", "Why?"), ("assistant", "Because."),
    ]  # fmt: skip


async def test_two_restores_at_once_both_apply_in_turn_and_lose_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]

    first, second = await asyncio.gather(
        _restore(chat, chat_id, blue, alice["auth"]), _restore(chat, chat_id, green, alice["auth"])
    )

    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    question, reply = await messages(chat, chat_id, alice["auth"])
    assert reply["id"] in {blue, green}
    assert question["content"] == (
        "Which colour?" if reply["id"] == blue else "Which colour, really?"
    )
    assert reply["earlierVersions"] == 2
    assert await _all_replies(chat, chat_id, alice["auth"]) == {blue, green, red}


async def test_the_same_version_restored_twice_at_once_is_restored_once(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]

    answers = await asyncio.gather(*(_restore(chat, chat_id, green, alice["auth"]) for _ in "ab"))

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    _, reply = await messages(chat, chat_id, alice["auth"])
    assert (reply["id"], reply["earlierVersions"]) == (green, 2)
    assert await _all_replies(chat, chat_id, alice["auth"]) == {blue, green, red}


async def test_a_restore_racing_the_chats_deletion_is_a_404_or_a_200_never_a_500(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, _green, _red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]

    restored, deleted = await asyncio.gather(
        _restore(chat, chat_id, blue, alice["auth"]),
        chat.client.delete(f"/api/chats/{chat_id}", headers=alice["auth"]),
    )

    assert deleted.status_code == 204, deleted.text
    if restored.status_code != 200:
        _problem(restored, 404, "chat_not_found")
    gone = await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])
    _problem(gone, 404, "chat_not_found")


async def test_a_restore_while_another_member_streams_a_new_message_is_a_409(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    project_id = await team_project(chat, alice, bob, "editor")
    started, blue, red = await blue_then_red(chat, alice["auth"], projectId=project_id)
    chat_id = started["chatId"]
    gate = held_reply(chat)
    bobs = await chat.start(bob["auth"], model=MODEL, message="Why red?", chatId=chat_id)
    first = await chat.events(bobs["sessionId"], limit=1)
    assert first[0][1] == "token"

    refused = await _restore(chat, chat_id, blue, alice["auth"])

    _problem(refused, 409, "reply_in_progress")
    gate.set()
    assert (await chat.events(bobs["sessionId"]))[-1][1] == "done"
    # now the question with versions is not the last one
    _problem(await _restore(chat, chat_id, blue, alice["auth"]), 409, "not_the_last_reply")
    found = await messages(chat, chat_id, alice["auth"])
    assert [m["id"] for m in found][1] == red
    assert [m["content"] for m in found][2:] == ["Why red?", "first rest"]


# --- what follows a restore: cache, search, export, shares, forks ----------------------------


async def test_the_prompt_cache_follows_the_restored_reply_in_the_context(chat: Chat) -> None:
    """A cached answer computed after one version is never served after another, and is served
    again once that version is back (the key hashes the context)."""
    alice = await chat.world.register("alice")
    question = f"Which colour {uuid.uuid4()}?"
    # chat A: q -> Red., then "Why?" answered and cached after Red.
    red_chat = await _answered(chat, alice["auth"], "Red.", message=question)
    await _answered(chat, alice["auth"], "Because red.", message="Why?", chatId=red_chat["chatId"])

    # chat B: q -> Blue., regenerated -> Red., Blue. restored: "Why?" is asked afresh
    blue_chat = await _answered(chat, alice["auth"], "Blue.", message=question, cache=False)
    blue_id = blue_chat["chatId"]
    blue = (await messages(chat, blue_id, alice["auth"]))[1]["id"]
    await _regenerated(chat, alice["auth"], "Red.", chatId=blue_id)
    assert (await _restore(chat, blue_id, blue, alice["auth"])).status_code == 200
    calls = len(chat.provider.requests)
    chat.provider.script(Reply(chunks=openai_pieces(["Because blue."], usage=(5, 1))))
    why = await chat.start(alice["auth"], model=MODEL, message="Why?", chatId=blue_id)
    events = await chat.events(why["sessionId"])
    assert (_text(events), events[-1][2]["cached"]) == ("Because blue.", False)
    assert len(chat.provider.requests) == calls + 1

    # chat C: q -> Blue., regenerated -> Red., then Blue. and Red. restored in turn: the
    # context is chat A's again, so "Why?" is served from the cache
    other = await _answered(chat, alice["auth"], "Blue.", message=question, cache=False)
    other_id = other["chatId"]
    first = (await messages(chat, other_id, alice["auth"]))[1]["id"]
    red = await _regenerated(chat, alice["auth"], "Red.", chatId=other_id)
    assert (await _restore(chat, other_id, first, alice["auth"])).status_code == 200
    assert (await _restore(chat, other_id, red, alice["auth"])).status_code == 200
    calls = len(chat.provider.requests)
    again = await chat.start(alice["auth"], model=MODEL, message="Why?", chatId=other_id)
    events = await chat.events(again["sessionId"])
    assert (_text(events), events[-1][2]["cached"]) == ("Because red.", True)
    assert len(chat.provider.requests) == calls


async def test_search_finds_the_restored_reply_and_question_not_the_replaced_ones(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    token = uuid.uuid4().hex[:10]
    kept_q, edited_q = f"quokka{token}", f"wombat{token}"
    kept_a, replaced_a = f"okapi{token}", f"zebrafish{token}"
    started = await _answered(
        chat, alice["auth"], f"An {kept_a} grazes.", message=f"Which {kept_q}?"
    )
    chat_id = started["chatId"]
    first = (await messages(chat, chat_id, alice["auth"]))[1]["id"]
    await _regenerated(
        chat, alice["auth"], f"A {replaced_a} swims.", chatId=chat_id, message=f"Which {edited_q}?"
    )

    restored = await _restore(chat, chat_id, first, alice["auth"])
    assert restored.status_code == 200, restored.text

    async def hits(word: str) -> list[str]:
        found = await chat.client.get(
            "/api/chats/search", params={"q": word}, headers=alice["auth"]
        )
        assert found.status_code == 200, found.text
        return [h["chatId"] for h in found.json()]

    assert await hits(kept_a) == [chat_id]
    assert await hits(kept_q) == [chat_id]
    assert await hits(replaced_a) == []
    assert await hits(edited_q) == []


async def test_exports_after_a_restore_hold_the_restored_exchange_only(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    assert (await _restore(chat, chat_id, green, alice["auth"])).status_code == 200

    markdown = await chat.client.get(f"/api/chats/{chat_id}/export", headers=alice["auth"])
    assert markdown.status_code == 200, markdown.text
    assert "Green." in markdown.text
    assert "Which colour, really?" in markdown.text
    assert "Blue." not in markdown.text
    assert "Red." not in markdown.text
    assert "2 messages" in markdown.text
    as_json = await chat.client.get(
        f"/api/chats/{chat_id}/export", params={"format": "json"}, headers=alice["auth"]
    )
    assert as_json.status_code == 200, as_json.text
    exported = as_json.json()["messages"]
    assert [(m["id"], m["content"], m["earlierVersions"]) for m in exported] == [
        (started["messageId"], "Which colour, really?", 0), (green, "Green.", 2),
    ]  # fmt: skip
    assert {blue, red}.isdisjoint(m["id"] for m in exported)


async def test_share_links_show_the_reply_of_their_moment_before_and_after_a_restore(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, _green, _red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    before = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=alice["auth"])
    assert before.status_code == 201, before.text

    assert (await _restore(chat, chat_id, blue, alice["auth"])).status_code == 200
    after = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=alice["auth"])
    assert after.status_code == 201, after.text

    old = (await chat.client.get(before.json()["url"])).json()
    new = (await chat.client.get(after.json()["url"])).json()
    assert [m["content"] for m in old["messages"]] == ["Which colour, really?", "Red."]
    assert [m["content"] for m in new["messages"]] == ["Which colour?", "Blue."]


async def test_a_fork_after_a_restore_copies_the_restored_reply_and_never_a_version(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started, (blue, green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    assert (await _restore(chat, chat_id, blue, alice["auth"])).status_code == 200

    at_version = await chat.client.post(
        f"/api/chats/{chat_id}/fork", json={"messageId": red}, headers=alice["auth"]
    )
    _problem(at_version, 422, "invalid_input")
    forked = await chat.client.post(
        f"/api/chats/{chat_id}/fork", json={"messageId": blue}, headers=alice["auth"]
    )
    assert forked.status_code == 201, forked.text
    copies = forked.json()["messages"]
    assert [(m["content"], m["earlierVersions"]) for m in copies] == [
        ("Which colour?", 0), ("Blue.", 0),
    ]  # fmt: skip
    # the fork goes on from Blue.; its regeneration keeps Blue. as its own version
    fork_id = forked.json()["id"]
    newer = await _regenerated(chat, alice["auth"], "Teal.", chatId=fork_id)
    [version] = await _versions(chat, fork_id, newer, alice["auth"])
    assert (version["content"], version["id"]) == ("Blue.", copies[1]["id"])
    # the chat forked from is unchanged
    assert await _all_replies(chat, chat_id, alice["auth"]) == {blue, green, red}


# --- ratings and permissions -----------------------------------------------------------------


async def test_a_version_is_rated_by_readers_and_the_rating_follows_it_back_and_forth(
    chat: Chat,
) -> None:
    alice, carol = await chat.world.register("alice"), await chat.world.register("carol")
    project_id = await team_project(chat, alice, carol, "viewer")
    started, blue, red = await blue_then_red(chat, alice["auth"], projectId=project_id)
    chat_id = started["chatId"]

    # a viewer rates the version; each reader sees their own rating only
    assert (await _rate(chat, chat_id, blue, carol["auth"], "down")).status_code == 200
    [mine] = await _versions(chat, chat_id, red, carol["auth"])
    [alices] = await _versions(chat, chat_id, red, alice["auth"])
    assert (mine["feedback"]["rating"], alices["feedback"]) == ("down", None)

    assert (await _restore(chat, chat_id, blue, alice["auth"])).status_code == 200
    _, reply = await messages(chat, chat_id, carol["auth"])
    assert (reply["id"], reply["feedback"]["rating"]) == (blue, "down")
    # and the replaced reply, now a version, can still be rated
    assert (await _rate(chat, chat_id, red, carol["auth"], "up")).status_code == 200
    [version] = await _versions(chat, chat_id, blue, carol["auth"])
    assert (version["id"], version["feedback"]["rating"]) == (red, "up")
    removed = await chat.client.delete(
        f"/api/chats/{chat_id}/messages/{red}/feedback", headers=carol["auth"]
    )
    assert removed.status_code in (200, 204), removed.text
    [version] = await _versions(chat, chat_id, blue, carol["auth"])
    assert version["feedback"] is None


async def test_a_version_is_rated_only_through_its_own_chat(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, _green, red) = await _three_versions(chat, alice["auth"])
    other = await _answered(chat, alice["auth"], "Other.", message=f"Other {uuid.uuid4()}")

    _problem(
        await _rate(chat, other["chatId"], blue, alice["auth"], "up"), 404, "message_not_found"
    )
    [version] = [
        v for v in await _versions(chat, started["chatId"], red, alice["auth"]) if v["id"] == blue
    ]
    assert version["feedback"] is None


async def test_editors_restore_in_others_chats_and_removed_members_get_404(chat: Chat) -> None:
    alice, dave = await chat.world.register("alice"), await chat.world.register("dave")
    created = await chat.client.post("/api/projects", json={"name": "Team"}, headers=alice["auth"])
    project_id = created.json()["id"]
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": dave["email"], "role": "editor"},
        headers=alice["auth"],
    )
    assert added.status_code == 201, added.text
    started, blue, red = await blue_then_red(chat, alice["auth"], projectId=project_id)
    chat_id = started["chatId"]

    by_editor = await _restore(chat, chat_id, blue, dave["auth"])
    assert by_editor.status_code == 200, by_editor.text
    assert [m["id"] for m in by_editor.json()["messages"]][1] == blue

    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{added.json()['userId']}", headers=alice["auth"]
    )
    assert removed.status_code == 204, removed.text
    _problem(await _restore(chat, chat_id, red, dave["auth"]), 404, "chat_not_found")
    listed = await chat.client.get(
        f"/api/chats/{chat_id}/messages/{blue}/versions", headers=dave["auth"]
    )
    _problem(listed, 404, "chat_not_found")
    _problem(await _rate(chat, chat_id, red, dave["auth"], "up"), 404, "chat_not_found")
    assert [m["id"] for m in await messages(chat, chat_id, alice["auth"])][1] == blue


async def test_a_version_of_another_chat_in_the_same_project_is_not_restored_here(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    one, (blue, _green, red) = await _three_versions(chat, alice["auth"])
    two = await _answered(chat, alice["auth"], "Yes.", message=f"Another {uuid.uuid4()}")
    two_reply = (await messages(chat, two["chatId"], alice["auth"]))[1]["id"]
    await _regenerated(chat, alice["auth"], "No.", chatId=two["chatId"])
    before = await messages(chat, two["chatId"], alice["auth"])

    _problem(await _restore(chat, two["chatId"], blue, alice["auth"]), 404, "message_not_found")
    _problem(await _restore(chat, one["chatId"], two_reply, alice["auth"]), 404)
    # the question itself, and the reply in the conversation of an earlier exchange
    _problem(
        await _restore(chat, two["chatId"], two["messageId"], alice["auth"]),
        404,
        "message_not_found",
    )
    assert await messages(chat, two["chatId"], alice["auth"]) == before
    assert [m["id"] for m in await messages(chat, one["chatId"], alice["auth"])][1] == red


# --- interactions: restore, regenerate, edit, models, failures -------------------------------


async def test_restore_regenerate_with_an_edit_and_restore_again_keeps_each_question_text(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "One.", message=f"A? {uuid.uuid4()}")
    chat_id = started["chatId"]
    first_q, one = await messages(chat, chat_id, alice["auth"])
    asked_a, one = first_q["content"], one["id"]
    two = await _regenerated(chat, alice["auth"], "Two.", chatId=chat_id, message="B?")
    assert (await _restore(chat, chat_id, one, alice["auth"])).status_code == 200
    three = await _regenerated(chat, alice["auth"], "Three.", chatId=chat_id, message="C?")
    sent = chat.provider.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent][-1:] == [("user", "C?")]

    versions = await _versions(chat, chat_id, three, alice["auth"])
    assert [(v["id"], v["question"]) for v in versions] == [(one, asked_a), (two, "B?")]
    restored = await _restore(chat, chat_id, two, alice["auth"])
    assert restored.status_code == 200, restored.text
    question, reply = restored.json()["messages"]
    assert (question["content"], reply["id"], reply["earlierVersions"]) == ("B?", two, 2)
    versions = await _versions(chat, chat_id, two, alice["auth"])
    assert [(v["id"], v["question"]) for v in versions] == [(one, asked_a), (three, "C?")]
    # a regeneration now answers "B?" again, with the restored reply's model
    four = await _regenerated(chat, alice["auth"], "Four.", chatId=chat_id)
    sent = chat.provider.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent][-1:] == [("user", "B?")]
    versions = await _versions(chat, chat_id, four, alice["auth"])
    assert [(v["id"], v["question"]) for v in versions] == [
        (one, asked_a), (two, "B?"), (three, "C?"),
    ]  # fmt: skip


async def test_a_regeneration_after_a_restore_asks_as_the_restored_reply_was_asked(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(
        chat, alice["auth"], "Cool.", message=f"Temp {uuid.uuid4()}", params={"topP": 0.25}
    )
    chat_id = started["chatId"]
    cool = (await messages(chat, chat_id, alice["auth"]))[1]["id"]
    echoed = await regenerate(chat, alice["auth"], chatId=chat_id, model="dev/echo")
    assert echoed.status_code == 201, echoed.text
    assert (await chat.events(echoed.json()["sessionId"]))[-1][1] == "done"
    _, reply = await messages(chat, chat_id, alice["auth"])
    assert reply["model"] == "dev/echo"

    assert (await _restore(chat, chat_id, cool, alice["auth"])).status_code == 200
    calls = len(chat.provider.requests)
    await _regenerated(chat, alice["auth"], "Cooler.", chatId=chat_id)

    assert len(chat.provider.requests) == calls + 1  # the restored reply's model, not echo
    sent = chat.provider.requests[-1].body
    assert (sent["model"], sent["top_p"]) == ("gpt-4o-mini", 0.25)


async def test_a_failed_regeneration_is_kept_as_a_version_and_the_good_reply_restored(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "Blue.", message=f"Colour {uuid.uuid4()}")
    chat_id = started["chatId"]
    blue = (await messages(chat, chat_id, alice["auth"]))[1]["id"]
    chat.provider.script(
        Reply(status=400, body={"error": {"message": "Bad", "type": "invalid_request_error"}})
    )
    failing = await regenerate(chat, alice["auth"], chatId=chat_id)
    assert failing.status_code == 201, failing.text
    events = await chat.events(failing.json()["sessionId"])
    assert events[-1][1] == "error"
    _, failed = await messages(chat, chat_id, alice["auth"])
    assert failed["status"] == "failed"

    restored = await _restore(chat, chat_id, blue, alice["auth"])

    assert restored.status_code == 200, restored.text
    [version] = await _versions(chat, chat_id, blue, alice["auth"])
    assert (version["id"], version["status"]) == (failed["id"], "failed")
    assert version["error"]
    await _answered(chat, alice["auth"], "Sky.", message="Why?", chatId=chat_id)
    sent = chat.provider.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent][-2:] == [
        ("assistant", "Blue."), ("user", "Why?"),
    ]  # fmt: skip


async def test_a_stopped_regeneration_is_a_version_once_stopped_and_not_before(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "Blue.", message=f"Colour {uuid.uuid4()}")
    chat_id = started["chatId"]
    blue = (await messages(chat, chat_id, alice["auth"]))[1]["id"]
    gate = held_reply(chat)  # "first", then held until the gate opens
    again = await regenerate(chat, alice["auth"], chatId=chat_id)
    assert again.status_code == 201, again.text
    session_id = again.json()["sessionId"]
    first = await chat.events(session_id, limit=1)
    assert _text(first) == "first"
    _problem(await _restore(chat, chat_id, blue, alice["auth"]), 409, "reply_in_progress")
    stop = await chat.client.post(f"/api/chat/sessions/{session_id}/stop", headers=alice["auth"])
    assert stop.status_code == 202
    events = await chat.events(session_id, last_event_id=first[-1][0])
    gate.set()
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "aborted")

    restored = await _restore(chat, chat_id, blue, alice["auth"])

    assert restored.status_code == 200, restored.text
    [version] = await _versions(chat, chat_id, blue, alice["auth"])
    assert (version["status"], version["content"]) == ("aborted", "first")


async def test_a_chat_ending_with_a_question_is_answered_then_its_versions_kept(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "Blue.", message=f"Colour {uuid.uuid4()}")
    forked = await chat.client.post(
        f"/api/chats/{started['chatId']}/fork",
        json={"messageId": started["messageId"]},
        headers=alice["auth"],
    )
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["id"]
    [question] = forked.json()["messages"]

    chat.provider.script(Reply(chunks=openai_pieces(["Green."], usage=(5, 1))))
    answered = await regenerate(chat, alice["auth"], chatId=fork_id, model=MODEL)
    assert answered.status_code == 201, answered.text
    assert answered.json()["replacedMessageId"] is None
    events = await chat.events(answered.json()["sessionId"])
    green = events[-1][2]["messageId"]
    _, reply = await messages(chat, fork_id, alice["auth"])
    assert (reply["id"], reply["earlierVersions"]) == (green, 0)
    assert await _versions(chat, fork_id, green, alice["auth"]) == []
    red = await _regenerated(chat, alice["auth"], "Red.", chatId=fork_id)
    [version] = await _versions(chat, fork_id, red, alice["auth"])
    assert (version["id"], version["question"]) == (green, question["content"])


async def test_an_imported_reply_is_kept_as_a_version_and_restored(chat: Chat) -> None:
    from tests.unit.test_chatgpt_export import lisbon

    alice = await chat.world.register("alice")
    imported = await chat.client.post(
        "/api/chats/import",
        json={"format": "chatgpt", "conversations": [lisbon()]},
        headers=alice["auth"],
    )
    assert imported.status_code == 201, imported.text
    chat_id = imported.json()["imported"][0]["chatId"]
    before = await messages(chat, chat_id, alice["auth"])
    old = before[-1]
    assert (old["content"], old["earlierVersions"]) == ("Try bacalhau — 🐟", 0)
    refused = await regenerate(chat, alice["auth"], chatId=chat_id)  # its model is a label
    _problem(refused, 422, "invalid_input")
    mine = await _regenerated(chat, alice["auth"], "Mine.", chatId=chat_id, model=MODEL)
    [version] = await _versions(chat, chat_id, mine, alice["auth"])
    assert (version["id"], version["question"]) == (old["id"], "And food?")

    restored = await _restore(chat, chat_id, old["id"], alice["auth"])

    assert restored.status_code == 200, restored.text
    assert [m["id"] for m in restored.json()["messages"]] == [m["id"] for m in before]
    assert restored.json()["messages"][-1]["earlierVersions"] == 1
    assert [v["id"] for v in await _versions(chat, chat_id, old["id"], alice["auth"])] == [mine]


async def test_a_restore_changes_no_usage_and_moves_the_chat_up_the_list(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started, (blue, _green, red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    later = await _answered(chat, alice["auth"], "Later.", message=f"Later {uuid.uuid4()}")
    listed = (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"]
    assert [c["id"] for c in listed][:2] == [later["chatId"], chat_id]
    usage = (await chat.client.get("/api/usage", headers=alice["auth"])).json()

    restored = await _restore(chat, chat_id, blue, alice["auth"])

    assert restored.status_code == 200, restored.text
    body = restored.json()
    read = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()
    assert body == read
    assert body["updatedAt"] > listed[1]["updatedAt"]
    listed = (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"]
    assert [c["id"] for c in listed][:2] == [chat_id, later["chatId"]]
    assert (await chat.client.get("/api/usage", headers=alice["auth"])).json() == usage
    assert (await _restore(chat, chat_id, red, alice["auth"])).status_code == 200
    assert (await chat.client.get("/api/usage", headers=alice["auth"])).json() == usage


async def test_switching_between_versions_at_the_cap_drops_none(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "v0", message=f"Switch {uuid.uuid4()}")
    chat_id = started["chatId"]
    ids = [(await messages(chat, chat_id, alice["auth"]))[1]["id"]]
    for n in range(1, 21):
        ids.append(await _regenerated(chat, alice["auth"], f"v{n}", chatId=chat_id))

    for target in (ids[0], ids[10], ids[19], ids[20], ids[0]):
        restored = await _restore(chat, chat_id, target, alice["auth"])
        assert restored.status_code == 200, restored.text
        assert restored.json()["messages"][1]["earlierVersions"] == 20

    assert await _all_replies(chat, chat_id, alice["auth"]) == set(ids)


async def test_a_reply_the_sweeper_failed_under_its_generator_stays_a_version_once_replaced(
    chat: Chat,
) -> None:
    """The sweeper ends a reply whose generator seems gone (here: ended by the same statement
    on this reply only, not the shared database's); the generator then finishing late must not
    bring it back into the conversation."""
    from datetime import UTC, datetime

    from tests.support.resolve import resolved

    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "Blue.", message=f"Colour {uuid.uuid4()}")
    chat_id = started["chatId"]
    blue = (await messages(chat, chat_id, alice["auth"]))[1]["id"]
    gate = held_reply(chat)
    again = await regenerate(chat, alice["auth"], chatId=chat_id)
    assert again.status_code == 201, again.text
    session_id = again.json()["sessionId"]
    first = await chat.events(session_id, limit=1)
    _, pending = await messages(chat, chat_id, alice["auth"])
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow.autocommit() as tx:
        assert await tx.chats.fail_reply(uuid.UUID(pending["id"]), datetime.now(UTC), "gone")

    restored = await _restore(chat, chat_id, blue, alice["auth"])
    assert restored.status_code == 200, restored.text
    gate.set()
    events = await chat.events(session_id, last_event_id=first[-1][0])
    assert events[-1][1] in ("done", "error")

    _, reply = await messages(chat, chat_id, alice["auth"])
    assert (reply["id"], reply["content"], reply["earlierVersions"]) == (blue, "Blue.", 1)
    [version] = await _versions(chat, chat_id, blue, alice["auth"])
    assert version["id"] == pending["id"]
    # and the next message is answered after Blue.
    await _answered(chat, alice["auth"], "Sky.", message="Why?", chatId=chat_id)
    sent = chat.provider.requests[-1].body["messages"]
    assert [m["content"] for m in sent][-2:] == ["Blue.", "Why?"]


async def test_a_project_with_rated_versions_is_deleted_with_them(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    created = await chat.client.post("/api/projects", json={"name": "Gone"}, headers=alice["auth"])
    project_id = created.json()["id"]
    started = await _answered(
        chat, alice["auth"], "Blue.", message=f"Colour {uuid.uuid4()}", projectId=project_id
    )
    chat_id = started["chatId"]
    blue = (await messages(chat, chat_id, alice["auth"]))[1]["id"]
    red = await _regenerated(chat, alice["auth"], "Red.", chatId=chat_id)
    assert (await _rate(chat, chat_id, blue, alice["auth"], "up")).status_code == 200
    assert (await _restore(chat, chat_id, blue, alice["auth"])).status_code == 200
    assert (await _rate(chat, chat_id, red, alice["auth"], "down")).status_code == 200

    deleted = await chat.client.delete(f"/api/projects/{project_id}", headers=alice["auth"])

    assert deleted.status_code == 204, deleted.text
    _problem(await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"]), 404)
    _problem(await _restore(chat, chat_id, red, alice["auth"]), 404, "chat_not_found")
    usage = (await chat.client.get("/api/usage", headers=alice["auth"])).json()
    assert usage["total"]["requests"] == 2  # what was spent outlives the replies


async def test_rating_the_oldest_version_while_the_21st_regeneration_drops_it_never_fails(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _answered(chat, alice["auth"], "v0", message=f"Race {uuid.uuid4()}")
    chat_id = started["chatId"]
    ids = [(await messages(chat, chat_id, alice["auth"]))[1]["id"]]
    for n in range(1, 21):
        ids.append(await _regenerated(chat, alice["auth"], f"v{n}", chatId=chat_id))
    chat.provider.script(Reply(chunks=openai_pieces(["v21"], usage=(5, 1))))

    rated, regenerated = await asyncio.gather(
        _rate(chat, chat_id, ids[0], alice["auth"], "up"),
        regenerate(chat, alice["auth"], chatId=chat_id),
    )

    assert regenerated.status_code == 201, regenerated.text
    events = await chat.events(regenerated.json()["sessionId"])
    assert events[-1][1] == "done"
    if rated.status_code != 200:
        _problem(rated, 404, "message_not_found")
    kept = await _versions(chat, chat_id, events[-1][2]["messageId"], alice["auth"])
    assert [v["id"] for v in kept] == ids[1:]
    assert ids[0] not in {v["id"] for v in kept}
    _problem(await _rate(chat, chat_id, ids[0], alice["auth"], "up"), 404, "message_not_found")


async def test_a_title_job_after_a_restore_titles_from_the_restored_exchange(chat: Chat) -> None:
    from tests.support.resolve import resolved
    from whalli.domain.model.jobs import TitleChat

    alice = await chat.world.register("alice")
    started, (blue, _green, _red) = await _three_versions(chat, alice["auth"])
    chat_id = started["chatId"]
    assert (await _restore(chat, chat_id, blue, alice["auth"])).status_code == 200
    calls = len(chat.provider.requests)
    chat.provider.script(Reply(chunks=openai_pieces(["Colour choice"], usage=(20, 2))))

    handler = await resolved(chat.world.container.services.title_chat())
    await handler.execute(TitleChat(chat_id=uuid.UUID(chat_id), expected_title=None))

    assert len(chat.provider.requests) == calls + 1
    sent = str(chat.provider.requests[-1].body["messages"])
    assert "Which colour?" in sent
    assert "Blue." in sent
    assert "Red." not in sent
    assert "Green." not in sent
    shown = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()
    assert shown["title"] == "Colour choice"
