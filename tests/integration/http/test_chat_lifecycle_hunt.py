"""A bug hunt (a helper's) of the chat lifecycle as a user of a chat platform meets it, end to
end over HTTP on the real app (uvicorn, Postgres, Redis, a fake OpenAI provider on loopback):
regenerate then read / export / search / share, stop at different moments, reconnecting with
odd ``Last-Event-ID`` values, system prompts with regenerate and the cache, attachments, roles
changing mid-conversation, list pagination, and bad input. Each test asserts the behaviour the
README promises (or, where it is silent, what a user would obviously expect: said so in the
docstring). Its 8 findings were fixed and their tests kept as regressions (a viewer's stop was
settled the other way: the README now says owners, editors and the starter stop a reply)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_attach_elsewhere import held_reply, team_project
from tests.integration.http.test_chat_flow import Chat, _read_events, _text
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.reply_stream import RedisReplyStream
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.replies import TokenEvent
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

MODEL = "openai/gpt-4o-mini"
ECHO = "dev/echo"
Events = list[tuple[str | None, str, dict[str, Any]]]
PROBLEM = "application/problem+json"


# --- helpers ------------------------------------------------------------------------------------
async def _exchange(chat: Chat, auth: dict[str, str], message: str, **body: Any) -> dict[str, Any]:
    """A message answered to the end (``model`` defaults to the OpenAI fake)."""
    body.setdefault("model", MODEL)
    started = await chat.start(auth, message=message, **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] in ("done", "error"), events
    started["events"] = events
    return started


async def _regenerate(chat: Chat, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await chat.client.post("/api/chat/regenerate", json=body, headers=auth)


async def _regenerated(
    chat: Chat, auth: dict[str, str], **body: Any
) -> tuple[dict[str, Any], Events]:
    response = await _regenerate(chat, auth, **body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer, await chat.events(answer["sessionId"])


async def _read(chat: Chat, chat_id: str, auth: dict[str, str]) -> dict[str, Any]:
    response = await chat.client.get(f"/api/chats/{chat_id}", headers=auth)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _stop(chat: Chat, session_id: str, auth: dict[str, str]) -> httpx.Response:
    return await chat.client.post(f"/api/chat/sessions/{session_id}/stop", headers=auth)


async def _usage(chat: Chat, auth: dict[str, str]) -> dict[str, Any]:
    response = await chat.client.get("/api/usage", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _listed(chat: Chat, auth: dict[str, str], query: str = "") -> list[str]:
    response = await chat.client.get(f"/api/chats{query}", headers=auth)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def _search(chat: Chat, auth: dict[str, str], q: str) -> list[dict[str, Any]]:
    response = await chat.client.get("/api/chats/search", params={"q": q}, headers=auth)
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


def _is_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A 4xx RFC 9457 problem (one of ``statuses`` when given) with a ``detail``: its body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("detail"), str), body
    assert body["detail"], body
    return body


def _word() -> str:
    """A word found by full-text search and by nothing else (letters only)."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:12])


# --- regenerate, then every view of the chat ----------------------------------------------------
async def test_after_an_edit_and_regeneration_read_export_and_json_export_agree(
    chat: Chat,
) -> None:
    """The chat read, its Markdown export and its JSON export all show the edited question and
    the new reply, never the replaced ones; the JSON export is the read without reader passes."""
    alice = await chat.world.register("alice")
    filler = "please read the whole of this question before you answer it. "  # the title
    old_q, new_q = f"{filler}old {_word()}", f"{filler}new {_word()}"
    chat.provider.script(Reply(chunks=openai_pieces(["first", " answer"])))
    started = await _exchange(chat, alice["auth"], old_q)
    chat.provider.script(Reply(chunks=openai_pieces(["second", " answer"])))
    answer, events = await _regenerated(
        chat, alice["auth"], chatId=started["chatId"], message=new_q
    )
    assert _text(events) == "second answer"

    shown = await _read(chat, started["chatId"], alice["auth"])
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [
        ("user", new_q), ("assistant", "second answer"),
    ]  # fmt: skip
    assert answer["replacedMessageId"] not in {m["id"] for m in shown["messages"]}
    url = f"/api/chats/{started['chatId']}/export"
    markdown = await chat.client.get(url, headers=alice["auth"])
    assert markdown.status_code == 200, markdown.text
    assert new_q in markdown.text
    assert "second answer" in markdown.text
    assert old_q.split()[-1] not in markdown.text
    assert "first answer" not in markdown.text
    assert "2 messages" in markdown.text
    exported = await chat.client.get(url, params={"format": "json"}, headers=alice["auth"])
    assert exported.status_code == 200, exported.text
    body = exported.json()
    for message in shown["messages"]:
        message["sessionId"] = None
    assert body["messages"] == shown["messages"]


async def test_search_forgets_an_edited_question_and_a_replaced_reply(chat: Chat) -> None:
    """Search finds what the chat now says: not the words of the question as it was before the
    edit, nor of the reply the regeneration deleted."""
    alice = await chat.world.register("alice")
    old_word, reply_word, new_word = _word(), _word(), _word()
    chat.provider.script(Reply(chunks=openai_pieces([f"about {reply_word}"])))
    filler = "please read the whole of this question before you answer it. "  # the title
    started = await _exchange(chat, alice["auth"], f"{filler}tell me {old_word}")
    assert [h["chatId"] for h in await _search(chat, alice["auth"], old_word)] == [
        started["chatId"]
    ]
    assert len(await _search(chat, alice["auth"], reply_word)) == 1

    await _regenerated(chat, alice["auth"], chatId=started["chatId"], message=f"and {new_word}")

    assert await _search(chat, alice["auth"], old_word) == []
    assert await _search(chat, alice["auth"], reply_word) == []
    assert [h["chatId"] for h in await _search(chat, alice["auth"], new_word)] == [
        started["chatId"]
    ]


async def test_the_replaced_replys_rating_stays_with_it_and_the_new_reply_is_unrated(
    chat: Chat,
) -> None:
    """The replaced reply is kept as an earlier version, with its rating: the new reply carries
    none, the version shows it, it may still be rated, and the admin's counts keep it."""
    alice = await chat.world.register("alice")
    admin = await chat.world.create_admin()
    started = await _exchange(chat, alice["auth"], f"rate me {uuid.uuid4()}", model=ECHO)
    old_id = started["events"][-1][2]["messageId"]
    url = f"/api/chats/{started['chatId']}/messages/{old_id}/feedback"

    async def downs() -> int:
        response = await chat.client.get("/api/admin/feedback", headers=admin)
        assert response.status_code == 200, response.text
        return sum(row["down"] for row in response.json()["byModel"] if row["model"] == ECHO)

    before = await downs()
    rated = await chat.client.put(
        url, json={"rating": "down", "comment": "bad"}, headers=alice["auth"]
    )
    assert rated.status_code == 200, rated.text
    assert await downs() == before + 1

    await _regenerated(chat, alice["auth"], chatId=started["chatId"])

    _, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert reply["id"] != old_id
    assert (reply["feedback"], reply["earlierVersions"]) == (None, 1)
    versions = await chat.client.get(
        f"/api/chats/{started['chatId']}/messages/{reply['id']}/versions", headers=alice["auth"]
    )
    assert versions.status_code == 200, versions.text
    [version] = versions.json()["items"]
    assert (version["id"], version["feedback"]["rating"]) == (old_id, "down")
    assert await downs() == before + 1
    again = await chat.client.put(url, json={"rating": "up"}, headers=alice["auth"])
    assert again.status_code == 200, again.text
    assert await downs() == before


async def test_a_link_shared_after_a_regeneration_shows_only_the_new_reply(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_pieces(["stale"])))
    started = await _exchange(chat, alice["auth"], f"share after {uuid.uuid4()}")
    chat.provider.script(Reply(chunks=openai_pieces(["fresh"])))
    await _regenerated(chat, alice["auth"], chatId=started["chatId"], model=ECHO)

    made = await chat.client.post(f"/api/chats/{started['chatId']}/shares", headers=alice["auth"])
    assert made.status_code == 201, made.text
    shown = (await chat.client.get(made.json()["url"])).json()
    contents = [m["content"] for m in shown["messages"]]
    assert "stale" not in contents
    assert len(contents) == 2
    assert shown["model"] == ECHO


async def test_a_regeneration_by_another_model_is_shown_and_exported_under_it(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "one two three")
    _, events = await _regenerated(chat, alice["auth"], chatId=started["chatId"], model=ECHO)
    assert _text(events) == "one two three"
    _, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert (reply["model"], reply["provider"]) == (ECHO, "dev")
    markdown = await chat.client.get(
        f"/api/chats/{started['chatId']}/export", headers=alice["auth"]
    )
    assert f"Assistant ({ECHO})" in markdown.text
    assert f"Assistant ({MODEL})" not in markdown.text


async def test_regenerating_a_chat_in_the_middle_edits_only_its_last_question(chat: Chat) -> None:
    """Regenerate answers the chat's *last* message again; earlier turns stay as they were."""
    alice = await chat.world.register("alice")
    first = await _exchange(chat, alice["auth"], "alpha beta", model=ECHO)
    await _exchange(chat, alice["auth"], "gamma delta", model=ECHO, chatId=first["chatId"])
    _, events = await _regenerated(
        chat, alice["auth"], chatId=first["chatId"], message="epsilon zeta"
    )
    assert _text(events) == "epsilon zeta"
    shown = await _read(chat, first["chatId"], alice["auth"])
    assert [m["content"] for m in shown["messages"]] == [
        "alpha beta", "alpha beta", "epsilon zeta", "epsilon zeta",
    ]  # fmt: skip


async def test_an_export_while_a_reply_is_generated_shows_it_unfinished_without_a_pass(
    chat: Chat,
) -> None:
    """ "a file outlives them": the JSON export carries no reader pass, the Markdown one says
    the reply was still being written; the live read does carry its pass."""
    alice = await chat.world.register("alice")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"live {uuid.uuid4()}")
    await chat.events(started["sessionId"], limit=1)
    url = f"/api/chats/{started['chatId']}/export"
    _, live = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    exported = await chat.client.get(url, params={"format": "json"}, headers=alice["auth"])
    markdown = await chat.client.get(url, headers=alice["auth"])
    gate.set()
    await chat.events(started["sessionId"])
    assert live["sessionId"]
    _, reply = exported.json()["messages"]
    assert reply["status"] in ("pending", "streaming")
    assert reply["sessionId"] is None
    assert live["sessionId"] not in exported.text
    assert "still being written when exported" in markdown.text


@pytest.mark.parametrize(
    "query", [{"format": "xml"}, {"format": ""}, {"format": "JSON"}], ids=["xml", "empty", "upper"]
)
async def test_an_unknown_export_format_is_a_4xx_problem(chat: Chat, query: dict[str, str]) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "export me", model=ECHO)
    response = await chat.client.get(
        f"/api/chats/{started['chatId']}/export", params=query, headers=alice["auth"]
    )
    _is_problem(response)


# --- regenerate, usage ---------------------------------------------------------------------------
async def test_usage_keeps_the_replaced_replys_request_and_counts_the_new_one(chat: Chat) -> None:
    """ "the old one's usage stays recorded": a start and a regeneration are two requests,
    neither cached (a regeneration is never served from the cache)."""
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], f"count twice {uuid.uuid4()}", cache=True)
    await _regenerated(chat, alice["auth"], chatId=started["chatId"])
    body = await _usage(chat, alice["auth"])
    assert (body["total"]["requests"], body["total"]["cachedRequests"]) == (2, 0)
    assert body["total"]["completionTokens"] == 8


async def test_a_cached_reply_regenerated_counts_one_cached_and_one_fresh_request(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    prompt = f"cached then regenerated {uuid.uuid4()}"
    await _exchange(chat, alice["auth"], prompt)  # fills alice's (personal project's) cache
    again = await _exchange(chat, alice["auth"], prompt)
    assert again["events"][-1][2]["cached"] is True
    _, events = await _regenerated(chat, alice["auth"], chatId=again["chatId"])
    assert events[-1][2]["cached"] is False
    body = await _usage(chat, alice["auth"])
    assert (body["total"]["requests"], body["total"]["cachedRequests"]) == (3, 1)
    assert (await _usage(chat, bob["auth"]))["total"]["requests"] == 0


async def test_a_regeneration_by_an_editor_is_counted_in_the_editors_usage_with_its_params(
    chat: Chat,
) -> None:
    """The owner's first reply stays in the owner's usage; the editor's regeneration counts
    for the editor, and its sampling parameters reach the provider."""
    owner, ed = await chat.world.register("owner"), await chat.world.register("ed")
    project_id, _ = await team_project(chat, owner, ed, "editor")
    started = await _exchange(chat, owner["auth"], f"team {uuid.uuid4()}", projectId=project_id)
    await _regenerated(
        chat, ed["auth"], chatId=started["chatId"], params={"temperature": 0.3, "maxTokens": 7}
    )
    sent = chat.provider.requests[-1].body
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.3, 7)
    assert (await _usage(chat, owner["auth"]))["total"]["requests"] == 1
    assert (await _usage(chat, ed["auth"]))["total"]["requests"] == 1


# --- stop ------------------------------------------------------------------------------------
async def test_a_stop_before_the_first_token_leaves_an_empty_aborted_reply_that_can_be_regenerated(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    gate = asyncio.Event()
    chat.provider.script(Reply(chunks=openai_pieces(["never"]), gate=gate, gate_after=0))
    started = await chat.start(alice["auth"], model=MODEL, message=f"wait {uuid.uuid4()}")
    stopped = await _stop(chat, started["sessionId"], alice["auth"])
    assert stopped.status_code == 202, stopped.text
    events = await chat.events(started["sessionId"])
    gate.set()
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "aborted")
    assert _text(events) == ""
    _, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert (reply["status"], reply["content"], reply["sessionId"]) == ("aborted", "", None)

    _, again = await _regenerated(chat, alice["auth"], chatId=started["chatId"])
    assert (again[-1][1], _text(again)) == ("done", "Hello, world!")
    _, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert (reply["status"], reply["content"]) == ("complete", "Hello, world!")


async def test_a_stopped_reply_is_exported_as_stopped_and_counted_in_usage(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    unfinished = openai_pieces(["partial", " words"], usage=None, done=False)[:-1]  # no finish
    chat.provider.script(Reply(chunks=unfinished, hold=True))
    started = await chat.start(alice["auth"], model=MODEL, message=f"stop me {uuid.uuid4()}")
    first = await chat.events(started["sessionId"], limit=2)
    assert (await _stop(chat, started["sessionId"], alice["auth"])).status_code == 202
    rest = await chat.events(started["sessionId"], last_event_id=first[-1][0])
    assert rest[-1][2]["status"] == "aborted"

    markdown = await chat.client.get(
        f"/api/chats/{started['chatId']}/export", headers=alice["auth"]
    )
    assert "partial words" in markdown.text
    assert "stopped before the end" in markdown.text
    body = await _usage(chat, alice["auth"])
    assert body["total"]["requests"] == 1
    assert body["total"]["completionTokens"] > 0


async def test_a_stop_by_an_unknown_or_foreign_session_is_a_404_problem(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"mine {uuid.uuid4()}")
    foreign = await _stop(chat, started["sessionId"], bob["auth"])
    garbage = await _stop(chat, "x" * 300, alice["auth"])
    assert _is_problem(foreign, 404)["detail"] == _is_problem(garbage, 404)["detail"]
    gate.set()
    events = await chat.events(started["sessionId"])
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "complete")


async def test_a_stop_after_done_and_a_second_stop_change_nothing_and_resume_is_204(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], f"finished {uuid.uuid4()}")
    last_id = started["events"][-1][0]
    for _ in range(2):
        assert (await _stop(chat, started["sessionId"], alice["auth"])).status_code in (202, 404)
    _, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert (reply["status"], reply["content"]) == ("complete", "Hello, world!")
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    after = await chat.client.get(url, headers={"Last-Event-ID": last_id or ""})
    assert after.status_code == 204


async def test_a_viewer_streams_a_live_reply_by_their_reader_pass_but_may_not_stop_it(
    chat: Chat,
) -> None:
    """The README (settled by this hunt, which found it promising a viewer's stop the code
    refuses): every member who may read the chat may stream by the ``sessionId`` that ``GET
    /api/chats/{id}`` gives them; owners and editors, and whoever started it, may stop it."""
    alice, vic = await chat.world.register("alice"), await chat.world.register("vic")
    project_id, _ = await team_project(chat, alice, vic, "viewer")
    held_reply(chat)  # never let go: only the stop ends it
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"live {uuid.uuid4()}", projectId=project_id
    )
    await chat.events(started["sessionId"], limit=1)
    _, reply = (await _read(chat, started["chatId"], vic["auth"]))["messages"]
    assert reply["sessionId"]

    streamed = await chat.events(reply["sessionId"], limit=1)
    by_viewer = await _stop(chat, reply["sessionId"], vic["auth"])
    by_owner = await _stop(chat, started["sessionId"], alice["auth"])

    assert streamed[0][1] == "token"
    assert (by_viewer.status_code, by_viewer.json()["code"]) == (403, "permission_denied")
    assert by_owner.status_code == 202, by_owner.text
    events = await chat.events(started["sessionId"])
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "aborted")


# --- reconnect ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["garbage", "-1", "1-2-3", "99999999999999999999999-0", "1.5"])
async def test_a_malformed_last_event_id_is_a_4xx_problem(chat: Chat, value: str) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "a b c", model=ECHO)
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    response = await chat.client.get(url, headers={"Last-Event-ID": value})
    _is_problem(response)


async def test_a_malformed_last_event_id_in_the_query_is_a_4xx_problem(chat: Chat) -> None:
    """``lastEventId`` in the query (a client that cannot send the header) is checked alike."""
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "a b c", model=ECHO)
    response = await chat.client.get(
        "/api/chat/stream", params={"sessionId": started["sessionId"], "lastEventId": "x-y"}
    )
    _is_problem(response)


async def test_a_refused_regeneration_asking_for_events_is_a_problem_not_a_stream(
    chat: Chat,
) -> None:
    alice, vic = await chat.world.register("alice"), await chat.world.register("vic")
    project_id, _ = await team_project(chat, alice, vic, "viewer")
    started = await _exchange(chat, alice["auth"], "hi", model=ECHO, projectId=project_id)
    headers = {**vic["auth"], "Accept": "text/event-stream"}
    response = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=headers
    )
    _is_problem(response, 403)


async def test_a_future_last_event_id_on_a_finished_reply_is_told_to_stop(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """An id past the final event (a client that knows more than the server: another replica's
    clock, a stale tab) must not make a reply that completed look broken: 204, as after the
    final event, or at worst the final event again; never ``reply_interrupted``."""
    async with chat_app(stack_urls, unique, WHALLI_CHAT_HEARTBEAT_S="0.2") as chat:
        alice = await chat.world.register("alice")
        started = await _exchange(chat, alice["auth"], "a b c", model=ECHO)
        url = f"/api/chat/stream?sessionId={started['sessionId']}"
        future = "99999999999999-0"
        async with chat.client.stream("GET", url, headers={"Last-Event-ID": future}) as response:
            if response.status_code == 204:
                return
            assert response.status_code == 200
            events = await asyncio.wait_for(_read_events(response, None), timeout=20)
        assert events[-1][1] == "done", events


async def test_another_sessions_event_id_neither_skips_nor_repeats_this_reply(
    chat: Chat,
) -> None:
    """An id from another session of the same chat (a tab that followed the previous reply)
    resumes nothing it should not: either the whole of this reply or a clear 4xx, never a 204
    that hides the reply nor a part of it."""
    alice = await chat.world.register("alice")
    first = await _exchange(chat, alice["auth"], "one two", model=ECHO)
    second = await _exchange(chat, alice["auth"], "three four", model=ECHO, chatId=first["chatId"])
    old_id = first["events"][-1][0]
    assert old_id is not None
    url = f"/api/chat/stream?sessionId={second['sessionId']}"
    response = await chat.client.get(url, headers={"Last-Event-ID": old_id})
    if response.status_code >= 400:
        _is_problem(response)
        return
    assert response.status_code == 200, response.status_code
    events = await chat.events(second["sessionId"], last_event_id=old_id)
    assert events == second["events"]


async def test_two_readers_at_once_of_a_live_reply_see_the_same_events(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    gate = asyncio.Event()
    chat.provider.script(Reply(chunks=openai_pieces(["a", "b", "c", "d"]), gate=gate, gate_after=2))
    started = await chat.start(alice["auth"], model=MODEL, message=f"two tabs {uuid.uuid4()}")
    one = asyncio.create_task(chat.events(started["sessionId"]))
    two = asyncio.create_task(chat.events(started["sessionId"], headers=alice["auth"]))
    await asyncio.sleep(0.2)  # (not deciding anything: both are attached or soon will be)
    gate.set()
    first, second = await asyncio.wait_for(asyncio.gather(one, two), timeout=20)
    assert first == second
    assert _text(first) == "abcd"


@pytest.mark.parametrize("session_id", ["x" * 257, "", "%00", "a b"])
async def test_an_odd_session_id_on_the_stream_is_a_4xx_problem(
    chat: Chat, session_id: str
) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.get(
        "/api/chat/stream", params={"sessionId": session_id}, headers=alice["auth"]
    )
    _is_problem(response)


async def test_a_stream_of_an_unknown_session_is_a_404_problem(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.get(
        "/api/chat/stream?sessionId=nope", headers={"Last-Event-ID": "1-0", **alice["auth"]}
    )
    _is_problem(response, 404)


# --- system prompt, custom instructions, regenerate and the cache ---------------------------------
async def test_a_regeneration_uses_the_system_prompt_as_patched_since(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(
        chat, alice["auth"], f"who? {uuid.uuid4()}", systemPrompt="You are a pirate."
    )
    url = f"/api/chats/{started['chatId']}"
    patched = await chat.client.patch(
        url, json={"systemPrompt": "Be terse."}, headers=alice["auth"]
    )
    assert patched.status_code == 200, patched.text
    await _regenerated(chat, alice["auth"], chatId=started["chatId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Be terse."}
    removed = await chat.client.patch(url, json={"systemPrompt": None}, headers=alice["auth"])
    assert removed.status_code == 200, removed.text
    await _regenerated(chat, alice["auth"], chatId=started["chatId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user"]


async def test_a_changed_custom_instruction_is_not_answered_from_the_old_cache_entry(
    chat: Chat,
) -> None:
    """The instructions are copied as the new chat's system prompt, which keys the cache: the
    same question under other instructions goes to the provider."""
    alice = await chat.world.register("alice")
    prompt = f"same question {uuid.uuid4()}"
    me = "/api/auth/me"
    assert (
        await chat.client.patch(me, json={"customInstructions": "Be a cat."}, headers=alice["auth"])
    ).status_code == 200
    await _exchange(chat, alice["auth"], prompt, cache=True)
    assert (
        await chat.client.patch(me, json={"customInstructions": "Be a dog."}, headers=alice["auth"])
    ).status_code == 200
    calls = len(chat.provider.requests)
    again = await _exchange(chat, alice["auth"], prompt, cache=True)
    assert again["events"][-1][2]["cached"] is False
    assert len(chat.provider.requests) == calls + 1
    assert chat.provider.requests[-1].body["messages"][0] == {
        "role": "system", "content": "Be a dog.",
    }  # fmt: skip


async def test_a_system_prompt_patched_back_and_forth_keys_the_cache_by_its_current_text(
    chat: Chat,
) -> None:
    """Chat 1 asks Q under A (cached). Chat 2 asks the same first question under B, then its
    prompt is PATCHed to A: a *new* chat under A is served from A's entry, but chat 2's own
    next message (its history differs) is not."""
    alice = await chat.world.register("alice")
    prompt = f"Q {uuid.uuid4()}"
    await _exchange(chat, alice["auth"], prompt, systemPrompt="A")
    other = await _exchange(chat, alice["auth"], prompt, systemPrompt="B")
    assert other["events"][-1][2]["cached"] is False
    url = f"/api/chats/{other['chatId']}"
    assert (
        await chat.client.patch(url, json={"systemPrompt": "A"}, headers=alice["auth"])
    ).status_code == 200
    follow = await _exchange(chat, alice["auth"], prompt, chatId=other["chatId"])
    assert follow["events"][-1][2]["cached"] is False
    assert chat.provider.requests[-1].body["messages"][0]["content"] == "A"
    fresh = await _exchange(chat, alice["auth"], prompt, systemPrompt="A")
    assert fresh["events"][-1][2]["cached"] is True


async def test_a_regenerated_reply_is_not_written_to_the_cache(chat: Chat) -> None:
    """ "never from the cache nor stored in it": after a regeneration, the same question in a
    new chat gets the start's cached answer, not the regenerated one."""
    alice = await chat.world.register("alice")
    prompt = f"store once {uuid.uuid4()}"
    chat.provider.script(Reply(chunks=openai_pieces(["original"])))
    started = await _exchange(chat, alice["auth"], prompt)
    chat.provider.script(Reply(chunks=openai_pieces(["regenerated"])))
    await _regenerated(chat, alice["auth"], chatId=started["chatId"])
    again = await _exchange(chat, alice["auth"], prompt)
    assert again["events"][-1][2]["cached"] is True
    assert _text(again["events"]) == "original"


async def test_a_regeneration_keeps_the_chats_own_instructions_not_the_users_new_ones(
    chat: Chat,
) -> None:
    """ "changing them later changes no existing chat": a regeneration in a chat started under
    the old custom instructions still sends the old ones."""
    alice = await chat.world.register("alice")
    me = "/api/auth/me"
    set_old = await chat.client.patch(
        me, json={"customInstructions": "Answer in French."}, headers=alice["auth"]
    )
    assert set_old.status_code == 200, set_old.text
    started = await _exchange(chat, alice["auth"], f"hello {uuid.uuid4()}")
    set_new = await chat.client.patch(
        me, json={"customInstructions": "Answer in German."}, headers=alice["auth"]
    )
    assert set_new.status_code == 200, set_new.text
    await _regenerated(chat, alice["auth"], chatId=started["chatId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Answer in French."}
    shown = await _read(chat, started["chatId"], alice["auth"])
    assert shown["systemPrompt"] == "Answer in French."


# --- attachments ----------------------------------------------------------------------------------
async def _upload(chat: Chat, auth: dict[str, str], **params: str) -> str:
    response = await chat.client.post(
        "/api/files/upload", params=params, headers=auth,
        files={"file": ("notes.txt", b"plain text notes " * 4, "text/plain")},
    )  # fmt: skip
    assert response.status_code in (200, 201), response.text
    file_id: str = response.json()["id"]
    return file_id


async def test_another_users_or_a_deleted_or_unknown_file_is_a_404_and_writes_nothing(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    bobs = await _upload(chat, bob["auth"])
    alices = await _upload(chat, alice["auth"])
    deleted = await chat.client.delete(f"/api/files/{alices}", headers=alice["auth"])
    assert deleted.status_code == 204, deleted.text
    for file_id in (bobs, alices, str(uuid.uuid4())):
        response = await chat.client.post(
            "/api/chat/start", headers=alice["auth"],
            json={"model": MODEL, "message": "read it", "attachmentIds": [file_id]},
        )  # fmt: skip
        _is_problem(response, 404)
    assert await _listed(chat, alice["auth"]) == []
    assert (await _usage(chat, alice["auth"]))["total"]["requests"] == 0


# --- roles changing mid-conversation --------------------------------------------------------------
async def test_an_editor_downgraded_to_viewer_reads_and_rates_but_writes_nothing(
    chat: Chat,
) -> None:
    owner, ed = await chat.world.register("owner"), await chat.world.register("ed")
    project_id, ed_id = await team_project(chat, owner, ed, "editor")
    started = await _exchange(chat, ed["auth"], "hello there", model=ECHO, projectId=project_id)
    chat_id = started["chatId"]
    role = await chat.client.patch(
        f"/api/projects/{project_id}/members/{ed_id}", json={"role": "viewer"},
        headers=owner["auth"],
    )  # fmt: skip
    assert role.status_code == 200, role.text
    before = await _read(chat, chat_id, owner["auth"])

    more = await chat.client.post(
        "/api/chat/start", headers=ed["auth"],
        json={"model": ECHO, "message": "again", "chatId": chat_id},
    )  # fmt: skip
    regen = await _regenerate(chat, ed["auth"], chatId=chat_id)
    share = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=ed["auth"])
    rename = await chat.client.patch(
        f"/api/chats/{chat_id}", json={"title": "mine"}, headers=ed["auth"]
    )
    for refused in (more, regen, share, rename):
        _is_problem(refused, 403)
    reply_id = before["messages"][-1]["id"]
    rated = await chat.client.put(
        f"/api/chats/{chat_id}/messages/{reply_id}/feedback", json={"rating": "up"},
        headers=ed["auth"],
    )  # fmt: skip
    assert rated.status_code == 200, rated.text
    after = await _read(chat, chat_id, owner["auth"])
    assert after["messages"] == before["messages"]
    assert after["title"] == before["title"]


async def test_a_removed_member_can_no_longer_rate_share_read_or_regenerate(chat: Chat) -> None:
    owner, ed = await chat.world.register("owner"), await chat.world.register("ed")
    project_id, ed_id = await team_project(chat, owner, ed, "editor")
    started = await _exchange(chat, ed["auth"], "hello there", model=ECHO, projectId=project_id)
    chat_id = started["chatId"]
    reply_id = started["events"][-1][2]["messageId"]
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{ed_id}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text

    regen = await _regenerate(chat, ed["auth"], chatId=chat_id)
    rate = await chat.client.put(
        f"/api/chats/{chat_id}/messages/{reply_id}/feedback", json={"rating": "up"},
        headers=ed["auth"],
    )  # fmt: skip
    share = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=ed["auth"])
    read = await chat.client.get(f"/api/chats/{chat_id}", headers=ed["auth"])
    export = await chat.client.get(f"/api/chats/{chat_id}/export", headers=ed["auth"])
    for refused in (regen, rate, share, read, export):
        _is_problem(refused, 404)
    assert await _search(chat, ed["auth"], "hello") == []


async def test_a_member_removed_mid_reply_cannot_attach_to_it_any_more(chat: Chat) -> None:
    """The brief's "must follow the current role", as the README has it for reader passes ("a
    member removed since gets 404"): the removed member reads nothing more of the project."""
    owner, ed = await chat.world.register("owner"), await chat.world.register("ed")
    project_id, ed_id = await team_project(chat, owner, ed, "editor")
    gate = held_reply(chat)
    live = await chat.start(
        ed["auth"], model=MODEL, message=f"live {uuid.uuid4()}", projectId=project_id
    )
    await chat.events(live["sessionId"], limit=1)
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{ed_id}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text
    gate.set()
    url = f"/api/chat/stream?sessionId={live['sessionId']}"
    with_credentials = await chat.client.get(url, headers=ed["auth"])
    _is_problem(with_credentials, 404)


async def test_a_member_removed_mid_reply_cannot_stop_it_any_more(chat: Chat) -> None:
    """The brief's "must follow the current role", and the README's "a member removed since
    gets 404" for the stream: a removed member stops nothing in the project any more; the
    owner's reply goes on."""
    owner, ed = await chat.world.register("owner"), await chat.world.register("ed")
    project_id, ed_id = await team_project(chat, owner, ed, "editor")
    gate = held_reply(chat)
    live = await chat.start(
        ed["auth"], model=MODEL, message=f"live {uuid.uuid4()}", projectId=project_id
    )
    first = await chat.events(live["sessionId"], limit=1)
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{ed_id}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text
    stop = await _stop(chat, live["sessionId"], ed["auth"])
    _, reply = (await _read(chat, live["chatId"], owner["auth"]))["messages"]
    gate.set()
    rest = await chat.events(reply["sessionId"], last_event_id=first[-1][0])  # the owner's pass
    _is_problem(stop, 404)
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "complete")


async def test_a_chat_deleted_while_streaming_and_then_regenerated_is_404(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"doomed {uuid.uuid4()}")
    await chat.events(started["sessionId"], limit=1)
    assert (
        await chat.client.delete(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    ).status_code == 204
    gate.set()
    regen = await _regenerate(chat, alice["auth"], chatId=started["chatId"])
    _is_problem(regen, 404)
    export = await chat.client.get(f"/api/chats/{started['chatId']}/export", headers=alice["auth"])
    _is_problem(export, 404)
    assert await _search(chat, alice["auth"], "doomed") == []


async def test_a_project_deleted_while_a_reply_streams_ends_it_with_chat_deleted(
    chat: Chat,
) -> None:
    """Deleting the project deletes its chats: the reply being written ends with the
    documented ``chat_deleted`` error on the stream still open, its tokens still count, and
    nothing is left to read (a reconnect is a 404: the project it was in is gone)."""
    owner = await chat.world.register("owner")
    created = await chat.client.post("/api/projects", json={"name": "Gone"}, headers=owner["auth"])
    project_id = created.json()["id"]
    gate = held_reply(chat)
    started = await chat.start(
        owner["auth"], model=MODEL, message=f"doomed {uuid.uuid4()}", projectId=project_id
    )
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    async with chat.client.stream("GET", url) as open_stream:
        reading = asyncio.ensure_future(_read_events(open_stream, None))
        first = await chat.events(started["sessionId"], limit=1)  # the reply is under way
        gone = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
        assert gone.status_code == 204, gone.text
        gate.set()
        rest = await asyncio.wait_for(reading, 30)
    assert (rest[-1][1], rest[-1][2].get("code")) == ("error", "chat_deleted"), rest
    reconnect = await chat.client.get(url, headers={"Last-Event-ID": first[-1][0] or ""})
    _is_problem(reconnect, 404)
    _is_problem(await chat.client.get(f"/api/chats/{started['chatId']}", headers=owner["auth"]))
    assert (await _usage(chat, owner["auth"]))["total"]["requests"] == 1


# --- pagination -----------------------------------------------------------------------------------
async def _page_all(chat: Chat, auth: dict[str, str], limit: int, **query: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": limit, **query}
        if cursor:
            params["cursor"] = cursor
        response = await chat.client.get("/api/chats", params=params, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
    raise AssertionError("the pages never ended")


async def test_paging_with_pinned_and_archived_chats_lists_each_once_in_order(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    ids = []
    for i in range(7):
        ids.append((await _exchange(chat, alice["auth"], f"c{i} x", model=ECHO))["chatId"])
    newest_first = ids[::-1]
    for chat_id, body in ((ids[1], {"pinned": True}), (ids[4], {"archived": True})):
        r = await chat.client.patch(f"/api/chats/{chat_id}", json=body, headers=alice["auth"])
        assert r.status_code == 200, r.text
    for limit in (1, 2, 3):
        pages = await _page_all(chat, alice["auth"], limit)
        flat = [c for page in pages for c in page]
        assert flat == [c for c in newest_first if c != ids[4]], limit
    assert [c for p in await _page_all(chat, alice["auth"], 1, pinned="true") for c in p] == [
        ids[1]
    ]


async def test_a_chat_updated_while_paging_causes_no_duplicate_and_no_skipped_other_chat(
    chat: Chat,
) -> None:
    """Silent in the README; the user's obvious expectation of a "load more" list: a chat that
    moved to the top meanwhile is not shown twice, and no chat that did not move is skipped."""
    alice = await chat.world.register("alice")
    ids = [
        (await _exchange(chat, alice["auth"], f"p{i} x", model=ECHO))["chatId"] for i in range(6)
    ]
    newest_first = ids[::-1]
    first = await chat.client.get("/api/chats", params={"limit": 2}, headers=alice["auth"])
    page_one = [item["id"] for item in first.json()["items"]]
    assert page_one == newest_first[:2]
    moved = newest_first[3]  # on a later page; moves to the top
    await _exchange(chat, alice["auth"], "bump", model=ECHO, chatId=moved)
    seen = list(page_one)
    cursor = first.json()["nextCursor"]
    while cursor:
        page = await chat.client.get(
            "/api/chats", params={"limit": 2, "cursor": cursor}, headers=alice["auth"]
        )
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["nextCursor"]
    assert len(seen) == len(set(seen)), seen
    assert set(newest_first) - {moved} <= set(seen)


async def test_a_chat_deleted_while_paging_skips_no_other_chat(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    ids = [
        (await _exchange(chat, alice["auth"], f"d{i} x", model=ECHO))["chatId"] for i in range(5)
    ]
    newest_first = ids[::-1]
    first = await chat.client.get("/api/chats", params={"limit": 2}, headers=alice["auth"])
    page_one = [item["id"] for item in first.json()["items"]]
    gone = page_one[-1]  # the chat the cursor points at
    assert (
        await chat.client.delete(f"/api/chats/{gone}", headers=alice["auth"])
    ).status_code == 204
    rest = await chat.client.get(
        "/api/chats", params={"limit": 10, "cursor": first.json()["nextCursor"]},
        headers=alice["auth"],
    )  # fmt: skip
    assert rest.status_code == 200, rest.text
    assert [item["id"] for item in rest.json()["items"]] == newest_first[2:]


@pytest.mark.parametrize(
    "query", ["?cursor=garbage", "?cursor=", "?limit=0", "?limit=101", "?limit=x", "?pinned=maybe"]
)
async def test_a_bad_list_query_is_a_4xx_problem(chat: Chat, query: str) -> None:
    alice = await chat.world.register("alice")
    await _exchange(chat, alice["auth"], "one", model=ECHO)
    response = await chat.client.get(f"/api/chats{query}", headers=alice["auth"])
    _is_problem(response)


# --- bad input ------------------------------------------------------------------------------------
BAD_STARTS: list[tuple[str, Any]] = [
    ("empty", {"model": ECHO, "message": ""}),
    ("whitespace", {"model": ECHO, "message": " \n\t "}),
    ("too long", {"model": ECHO, "message": "x" * 200_001}),
    ("nul", {"model": ECHO, "message": "hello\u0000world"}),
    ("unknown field", {"model": ECHO, "message": "hi", "mesage": "hi"}),
    ("message a number", {"model": ECHO, "message": 5}),
    ("model null", {"model": None, "message": "hi"}),
    ("cache a string", {"model": ECHO, "message": "hi", "cache": "yes"}),
    ("huge maxTokens", {"model": ECHO, "message": "hi", "params": {"maxTokens": 10**7}}),
    ("negative temperature", {"model": ECHO, "message": "hi", "params": {"temperature": -0.1}}),
    ("nan temperature", {"model": ECHO, "message": "hi", "params": {"temperature": "NaN"}}),
    ("chatId not a uuid", {"model": ECHO, "message": "hi", "chatId": "nope"}),
    ("attachments not a list", {"model": ECHO, "message": "hi", "attachmentIds": "a"}),
    ("eleven attachments", {"model": ECHO, "message": "hi",
                            "attachmentIds": [str(uuid.uuid4()) for _ in range(11)]}),
    ("a list body", [{"model": ECHO, "message": "hi"}]),
]  # fmt: skip


@pytest.mark.parametrize("body", [b for _, b in BAD_STARTS], ids=[n for n, _ in BAD_STARTS])
async def test_a_bad_start_is_a_4xx_problem_and_writes_nothing(chat: Chat, body: Any) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.post("/api/chat/start", json=body, headers=alice["auth"])
    _is_problem(response)
    assert await _listed(chat, alice["auth"]) == []
    assert (await _usage(chat, alice["auth"]))["total"]["requests"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "dev/echo", "message": "\\ud800"}',
        b'{"model": "dev/echo", "message": "a\\udc00b"}',
        b'{"model": "dev/echo", "message": "\xff\xfe"}',
        b'{"model": "dev/echo", "message": "hi"',
        b"",
    ],
    ids=["lone high surrogate", "lone low surrogate", "not utf-8", "truncated", "empty body"],
)
async def test_unreadable_json_is_a_400_problem_saying_why_and_writes_nothing(
    chat: Chat, raw: bytes
) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.post(
        "/api/chat/start", content=raw,
        headers={**alice["auth"], "Content-Type": "application/json"},
    )  # fmt: skip
    _is_problem(response, 400)
    assert await _listed(chat, alice["auth"]) == []


async def test_a_100k_character_message_is_saved_and_answered_whole(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    message = ("word " * 20_000).strip()
    started = await chat.start(alice["auth"], model=ECHO, message=message)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    question, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert question["content"] == message
    assert reply["status"] == "complete"


BAD_REGENERATIONS: list[tuple[str, dict[str, Any]]] = [
    ("empty message", {"message": ""}),
    ("whitespace message", {"message": "   "}),
    ("nul message", {"message": "a\u0000b"}),
    ("too long message", {"message": "x" * 200_001}),
    ("unknown field", {"mesage": "x"}),
    ("negative temperature", {"params": {"temperature": -1}}),
    ("huge maxTokens", {"params": {"maxTokens": 10**9}}),
    ("unknown model", {"model": "nope/none"}),
    ("model a number", {"model": 4}),
    ("model outside the plan", {"model": "openai/gpt-4o"}),
]


@pytest.mark.parametrize(
    "extra", [b for _, b in BAD_REGENERATIONS], ids=[n for n, _ in BAD_REGENERATIONS]
)
async def test_a_bad_regeneration_is_a_4xx_problem_and_changes_nothing(
    chat: Chat, extra: dict[str, Any]
) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "keep me", model=ECHO)
    before = await _read(chat, started["chatId"], alice["auth"])
    response = await _regenerate(chat, alice["auth"], chatId=started["chatId"], **extra)
    _is_problem(response)
    after = await _read(chat, started["chatId"], alice["auth"])
    assert after["messages"] == before["messages"]
    assert (await _usage(chat, alice["auth"]))["total"]["requests"] == 1


async def test_a_regeneration_of_a_chat_without_a_reply_yet_answers_it(chat: Chat) -> None:
    """A chat whose last message is a user's (its reply never written: an imported chat ending
    on a question) gets its reply by the model named, nothing replaced (c9f8304; before, a 409:
    such a chat could only be followed by another question)."""
    alice = await chat.world.register("alice")
    imported = await chat.client.post(
        "/api/chats/import", headers=alice["auth"],
        json={"format": "chatgpt", "conversations": [_conversation("only a question")]},
    )  # fmt: skip
    assert imported.status_code == 201, imported.text
    chat_id = imported.json()["imported"][0]["chatId"]
    response = await _regenerate(chat, alice["auth"], chatId=chat_id, model=ECHO)
    assert response.status_code == 201, response.text
    assert response.json()["replacedMessageId"] is None
    assert _text(await chat.events(response.json()["sessionId"])) == "only a question"
    read = (await _read(chat, chat_id, alice["auth"]))["messages"]
    assert [(m["role"], m["model"]) for m in read] == [("user", None), ("assistant", ECHO)]


def _conversation(question: str) -> dict[str, Any]:
    root, asked = str(uuid.uuid4()), str(uuid.uuid4())
    return {
        "title": "Imported", "create_time": 1_700_000_000.0, "update_time": 1_700_000_100.0,
        "current_node": asked,
        "mapping": {
            root: {"id": root, "message": None, "parent": None, "children": [asked]},
            asked: {
                "id": asked, "parent": root, "children": [],
                "message": {
                    "id": asked, "author": {"role": "user"}, "create_time": 1_700_000_050.0,
                    "content": {"content_type": "text", "parts": [question]},
                },
            },
        },
    }  # fmt: skip


BAD_PATCHES: list[tuple[str, dict[str, Any]]] = [
    ("empty title", {"title": ""}),
    ("blank title", {"title": "   "}),
    ("nul title", {"title": "a\u0000b"}),
    ("huge title", {"title": "t" * 10_000}),
    ("pinned a string", {"pinned": "yes"}),
    ("unknown field", {"titel": "x"}),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_PATCHES], ids=[n for n, _ in BAD_PATCHES])
async def test_a_bad_chat_patch_is_a_4xx_problem_and_keeps_the_chat(
    chat: Chat, body: dict[str, Any]
) -> None:
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "keep my title", model=ECHO)
    url = f"/api/chats/{started['chatId']}"
    before = await _read(chat, started["chatId"], alice["auth"])
    response = await chat.client.patch(url, json=body, headers=alice["auth"])
    _is_problem(response)
    assert await _read(chat, started["chatId"], alice["auth"]) == before


@pytest.mark.parametrize("limit", ["0", "101", "-1", "x"])
async def test_a_bad_search_limit_is_a_4xx_problem(chat: Chat, limit: str) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.get(
        "/api/chats/search", params={"q": "hello", "limit": limit}, headers=alice["auth"]
    )
    _is_problem(response)


@pytest.mark.parametrize("q", ["\u0000", "a" * 5000, "\"'()&|!<->:*", "-", "é" * 3000])
async def test_an_odd_search_is_never_a_500(chat: Chat, q: str) -> None:
    alice = await chat.world.register("alice")
    await _exchange(chat, alice["auth"], "something to find", model=ECHO)
    response = await chat.client.get("/api/chats/search", params={"q": q}, headers=alice["auth"])
    if response.status_code >= 400:
        _is_problem(response)
    else:
        assert isinstance(response.json(), list)


def _event_source(raw: bytes) -> Events:
    """(id, event, data) parsed as the HTML spec's EventSource does: lines end at CR, LF or
    CRLF only (not at U+2028, U+0085 and the others ``str.splitlines`` knows)."""
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    found: Events = []
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        if line == "":
            if "data" in fields:
                data = json.loads(fields["data"])
                found.append((fields.get("id"), fields.get("event", "message"), data))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = fields[name] + "\n" + value if name in fields else value
    return found


async def test_odd_unicode_streams_to_an_event_source_and_is_saved_exactly(chat: Chat) -> None:
    """A reply holding line and paragraph separators, NEL, CRLF and astral characters arrives
    in an EventSource as the same text (no line break splits a data field) and is saved so."""
    alice = await chat.world.register("alice")
    odd = ["line\u2028sep\u2029", " cr\r\nlf\r", " 𝔘\u0085x", " \\u0000 \ufeff"]
    chat.provider.script(Reply(chunks=openai_pieces(odd)))
    started = await chat.start(alice["auth"], model=MODEL, message=f"odd {uuid.uuid4()}")
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    response = await asyncio.wait_for(chat.client.get(url), timeout=20)
    events = _event_source(response.content)
    assert events[-1][1] == "done"
    assert _text(events) == "".join(odd)
    _, reply = (await _read(chat, started["chatId"], alice["auth"]))["messages"]
    assert reply["content"] == "".join(odd)
    markdown = await chat.client.get(
        f"/api/chats/{started['chatId']}/export", headers=alice["auth"]
    )
    assert "".join(odd) in markdown.text


@pytest.mark.parametrize("where", ["start", "regenerate", "title"])
async def test_a_nul_character_is_refused_naming_the_field_and_the_character(
    chat: Chat, where: str
) -> None:
    """As a NUL in a system prompt already is ("may not contain the NUL character", field
    ``systemPrompt``): the problem says which field and what is wrong with it."""
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "keep me", model=ECHO)
    field = {"start": "message", "regenerate": "message", "title": "title"}[where]
    if where == "start":
        response = await chat.client.post(
            "/api/chat/start", json={"model": ECHO, "message": "a\u0000b"}, headers=alice["auth"]
        )
    elif where == "regenerate":
        response = await _regenerate(
            chat, alice["auth"], chatId=started["chatId"], message="a\u0000b"
        )
    else:
        response = await chat.client.patch(
            f"/api/chats/{started['chatId']}", json={"title": "a\u0000b"}, headers=alice["auth"]
        )
    body = _is_problem(response)
    assert body.get("field") == field, body
    assert "NUL" in body["detail"], body


async def test_a_chat_titled_with_only_invisible_characters_exports_under_a_real_name(
    chat: Chat,
) -> None:
    """Silent in the README; a user downloading an export expects a visible file name."""
    alice = await chat.world.register("alice")
    started = await _exchange(chat, alice["auth"], "hello", model=ECHO)
    renamed = await chat.client.patch(
        f"/api/chats/{started['chatId']}", json={"title": "\u202e"}, headers=alice["auth"]
    )
    assert renamed.status_code in (200, 422), renamed.text
    export = await chat.client.get(f"/api/chats/{started['chatId']}/export", headers=alice["auth"])
    assert export.status_code == 200, export.text
    disposition = export.headers["content-disposition"]
    assert 'filename=".md"' not in disposition, disposition
    assert "''.md" not in disposition, disposition


async def test_a_reconnect_after_a_reply_interrupted_error_is_told_to_stop(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """ "Every stream ends with done or error" and "after the final event that answers 204,
    which stops an EventSource from reconnecting". A reply whose generating process died (here:
    a session with one token in the shared Redis stream and nobody producing it, as a killed
    process leaves it) ends with ``reply_interrupted``; the EventSource then reconnects with
    that event's id and must be told to stop."""
    async with chat_app(stack_urls, unique, WHALLI_CHAT_HEARTBEAT_S="0.3") as chat:
        alice = await chat.world.register("alice")
        container = chat.world.container
        sessions = await resolved(container.adapters.chat_sessions())
        now = datetime.now(UTC)
        alice_id = uuid.UUID(alice["user"]["id"])
        session = ChatSession.open(
            id=uuid.uuid4().hex + uuid.uuid4().hex, user_id=alice_id, chat_id=uuid.uuid4(),
            project_id=personal_project_id(alice_id), user_message_id=uuid.uuid4(),
            reply_message_id=uuid.uuid4(), model=MODEL, now=now,
        )  # fmt: skip
        await sessions.save(session, now)
        dead = RedisReplyStream(await resolved(container.gateways.redis()))  # no beacon
        await dead.publish(session.id, TokenEvent(delta="half"), 600)

        events = await asyncio.wait_for(chat.events(session.id), timeout=30)
        assert [(name, data.get("code")) for _, name, data in events] == [
            ("token", None), ("error", "reply_interrupted"),
        ]  # fmt: skip
        url = f"/api/chat/stream?sessionId={session.id}"
        last = events[-1][0] or ""
        async with chat.client.stream("GET", url, headers={"Last-Event-ID": last}) as again:
            status = again.status_code
            replay = await asyncio.wait_for(_read_events(again, None), 30) if status == 200 else []
        assert status == 204, replay


async def test_a_start_naming_a_chat_and_another_project_is_refused(chat: Chat) -> None:
    """Silent in the README; as the start already refuses a ``systemPrompt`` with ``chatId``
    (it applies to a new chat only), a ``projectId`` that is not the chat's is a client bug a
    4xx should reveal, not a field dropped without a word."""
    owner, vic = await chat.world.register("owner"), await chat.world.register("vic")
    project_id, _ = await team_project(chat, owner, vic, "viewer")
    own = await _exchange(chat, vic["auth"], "mine", model=ECHO)
    before = await _read(chat, own["chatId"], vic["auth"])
    response = await chat.client.post(
        "/api/chat/start", headers=vic["auth"],
        json={"model": ECHO, "message": "where?", "chatId": own["chatId"], "projectId": project_id},
    )  # fmt: skip
    if response.status_code == 201:
        await chat.events(response.json()["sessionId"])
    _is_problem(response)
    assert (await _read(chat, own["chatId"], vic["auth"]))["messages"] == before["messages"]
