"""Chat routes: list with cursors, search, read, rename, delete; strangers get 404 as if missing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import Chat, Message, MessageRole, MessageStatus, TokenUsage
from whalli.entrypoints.http.json_body import LONE_SURROGATE

SeedCaller = Callable[[str], Awaitable[Caller]]


@pytest.fixture
def seed(container: FakeContainer, client: AsyncTestClient[Litestar]) -> SeedCaller:
    async def make(name: str) -> Caller:
        return await seed_caller(container, client, name)

    return make


async def new_project(owner: Caller, *members: tuple[Caller, str]) -> str:
    created = await owner.call("POST", "/api/projects", {"name": "Research"})
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    for member, role in members:
        added = await owner.call(
            "POST", f"/api/projects/{project_id}/members", {"email": member.email, "role": role}
        )
        assert added.status_code == 201, added.text
    return project_id


async def new_chat(
    container: FakeContainer, project_id: str, author: Caller, title: str = "A chat"
) -> str:
    now = container.clock.advance(timedelta(seconds=1))
    chat = Chat(
        id=container.ids.new_id(), project_id=UUID(project_id), user_id=author.user.id,
        title=title, created_at=now, updated_at=now,
    )  # fmt: skip
    async with container.uow() as uow:
        await uow.chats.add(chat)
        await uow.commit()
    return str(chat.id)


async def add_message(container: FakeContainer, chat_id: str, message: Message) -> None:
    async with container.uow() as uow:
        await uow.chats.add_message(message)
        await uow.commit()


# --- listing -----------------------------------------------------------------------------------
async def test_a_member_pages_through_a_projects_chats_newest_first(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, vic = await seed("ada"), await seed("vic")
    project_id = await new_project(ada, (vic, "viewer"))
    chat_ids = [await new_chat(container, project_id, ada) for _ in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        after = f"&cursor={cursor}" if cursor else ""
        response = await vic.call("GET", f"/api/chats?projectId={project_id}&limit=2{after}")
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break

    assert seen == chat_ids[::-1]
    assert pages == 3
    assert body["items"][0] == {
        "id": chat_ids[0], "projectId": project_id, "title": "A chat",
        "createdAt": body["items"][0]["createdAt"], "updatedAt": body["items"][0]["updatedAt"],
        "pinned": False, "archived": False, "pinnedAt": None, "archivedAt": None,
    }  # fmt: skip


async def test_without_a_project_the_list_is_of_the_callers_personal_project(
    seed: SeedCaller,
) -> None:
    ada = await seed("ada")
    response = await ada.call("GET", "/api/chats")
    assert response.status_code == 200
    assert response.json() == {"items": [], "nextCursor": None}


@pytest.mark.parametrize("query", ["cursor=garbage", "cursor=AAAA", "limit=0", "limit=101"])
async def test_a_bad_cursor_or_limit_is_422(seed: SeedCaller, query: str) -> None:
    ada = await seed("ada")
    project_id = await new_project(ada)
    response = await ada.call("GET", f"/api/chats?projectId={project_id}&{query}")
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"


async def test_a_stranger_cannot_list_a_projects_chats(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, bob = await seed("ada"), await seed("bob")
    project_id = await new_project(ada)
    await new_chat(container, project_id, ada)
    on_real = await bob.call("GET", f"/api/chats?projectId={project_id}")
    on_missing = await bob.call("GET", f"/api/chats?projectId={uuid.uuid4()}")
    assert on_real.status_code == on_missing.status_code == 404
    assert on_real.json()["code"] == on_missing.json()["code"] == "project_not_found"


# --- reading, renaming, deleting -----------------------------------------------------------------
async def test_a_member_reads_a_chat_with_its_messages(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, vic = await seed("ada"), await seed("vic")
    project_id = await new_project(ada, (vic, "viewer"))
    chat_id = await new_chat(container, project_id, ada, "Taxes")
    now = container.clock.now()
    question = Message.from_user(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                 content="How much?", now=now)  # fmt: skip
    answer = Message.pending_reply(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                   model="gpt-4o-mini", provider="openai", now=now)  # fmt: skip
    answer.finish(
        status=MessageStatus.COMPLETE, content="Plenty.", now=now, finish_reason="stop",
        usage=TokenUsage(prompt_tokens=12, completion_tokens=3, reasoning_tokens=2),
        cost_usd=0.25, ttft_ms=40,
        total_ms=90, reasoning="Taxes are high.",
    )  # fmt: skip
    await add_message(container, chat_id, question)
    await add_message(container, chat_id, answer)

    response = await vic.call("GET", f"/api/chats/{chat_id}")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["projectId"], body["title"]) == (chat_id, project_id, "Taxes")
    assert [m["role"] for m in body["messages"]] == [MessageRole.USER, MessageRole.ASSISTANT]
    assert body["messages"][1] == {
        "id": str(answer.id), "role": "assistant", "content": "Plenty.", "status": "complete",
        "model": "gpt-4o-mini", "provider": "openai",
        "usage": {"promptTokens": 12, "completionTokens": 3, "cachedPromptTokens": 0,
                  "cacheWriteTokens": 0, "reasoningTokens": 2}, "costUsd": 0.25, "cached": False,
        "finishReason": "stop", "ttftMs": 40, "totalMs": 90, "attachmentIds": [], "error": None,
        "reasoning": "Taxes are high.",
        "createdAt": body["messages"][1]["createdAt"], "sessionId": None, "feedback": None,
        "earlierVersions": 0,
    }  # fmt: skip


async def test_a_reply_still_being_generated_shows_the_session_to_stream_it_from(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, vic, bob = await seed("ada"), await seed("vic"), await seed("bob")
    project_id = await new_project(ada, (vic, "viewer"))
    chat_id = await new_chat(container, project_id, ada)
    now = container.clock.now()
    question = Message.from_user(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                 content="Still there?", now=now)  # fmt: skip
    answer = Message.pending_reply(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                   model="dev/echo", provider="dev", now=now)  # fmt: skip
    await add_message(container, chat_id, question)
    await add_message(container, chat_id, answer)
    session = ChatSession.open(
        id="s" * 43, user_id=ada.user.id, chat_id=UUID(chat_id), project_id=UUID(project_id),
        user_message_id=question.id, reply_message_id=answer.id, model="dev/echo", now=now,
    )  # fmt: skip
    await container.chat_sessions.save(session, now)

    response = await vic.call("GET", f"/api/chats/{chat_id}")

    assert response.status_code == 200, response.text
    messages = response.json()["messages"]
    assert [m["status"] for m in messages] == ["complete", "pending"]
    assert messages[0]["sessionId"] is None
    granted = container.stream_passes.open(messages[1]["sessionId"], container.clock.now())
    assert granted is not None  # a reader pass for vic, not the session id itself
    assert (granted.reply_message_id, granted.user_id) == (answer.id, vic.user.id)
    assert session.id not in response.text
    stranger = await bob.call("GET", f"/api/chats/{chat_id}")
    assert stranger.status_code == 404
    assert session.id not in stranger.text


async def test_an_editor_renames_and_deletes_a_chat(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, eve = await seed("ada"), await seed("eve")
    project_id = await new_project(ada, (eve, "editor"))
    chat_id = await new_chat(container, project_id, ada)

    renamed = await eve.call("PATCH", f"/api/chats/{chat_id}", {"title": "  Spring  plans "})
    unchanged = await eve.call("PATCH", f"/api/chats/{chat_id}", {})
    assert renamed.status_code == unchanged.status_code == 200
    assert renamed.json()["title"] == unchanged.json()["title"] == "Spring plans"
    assert (await ada.call("GET", f"/api/chats/{chat_id}")).json()["title"] == "Spring plans"

    deleted = await eve.call("DELETE", f"/api/chats/{chat_id}")
    assert deleted.status_code == 204
    assert (await ada.call("GET", f"/api/chats/{chat_id}")).status_code == 404


async def test_a_bad_title_is_422_and_a_misspelt_field_400(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada = await seed("ada")
    chat_id = await new_chat(container, await new_project(ada), ada)
    empty = await ada.call("PATCH", f"/api/chats/{chat_id}", {"title": "  "})
    misspelt = await ada.call("PATCH", f"/api/chats/{chat_id}", {"tilte": "x"})
    assert (empty.status_code, empty.json()["code"]) == (422, "invalid_input")
    assert misspelt.status_code == 400


@pytest.mark.parametrize(
    ("method", "body"), [("PATCH", {"title": "Mine"}), ("PATCH", {}), ("DELETE", None)]
)
async def test_a_viewer_may_neither_rename_nor_delete(
    seed: SeedCaller, container: FakeContainer, method: str, body: Any
) -> None:
    ada, vic = await seed("ada"), await seed("vic")
    project_id = await new_project(ada, (vic, "viewer"))
    chat_id = await new_chat(container, project_id, ada)
    before = (await ada.call("GET", f"/api/chats/{chat_id}")).json()

    response = await vic.call(method, f"/api/chats/{chat_id}", body)

    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert (await ada.call("GET", f"/api/chats/{chat_id}")).json() == before


@pytest.mark.parametrize(
    ("method", "body"), [("GET", None), ("PATCH", {"title": "Mine now"}), ("DELETE", None)]
)
async def test_another_users_chat_is_404_exactly_like_a_missing_one(
    seed: SeedCaller, container: FakeContainer, method: str, body: Any
) -> None:
    ada, bob = await seed("ada"), await seed("bob")
    chat_id = await new_chat(container, await new_project(ada), ada)
    before = (await ada.call("GET", f"/api/chats/{chat_id}")).json()

    on_real = await bob.call(method, f"/api/chats/{chat_id}", body)
    on_missing = await bob.call(method, f"/api/chats/{uuid.uuid4()}", body)

    assert on_real.status_code == on_missing.status_code == 404
    assert on_real.json()["code"] == on_missing.json()["code"] == "chat_not_found"
    assert on_real.json()["detail"] == on_missing.json()["detail"]
    assert (await ada.call("GET", f"/api/chats/{chat_id}")).json() == before


# --- search --------------------------------------------------------------------------------------
async def test_search_returns_only_chats_the_caller_can_read(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, bob = await seed("ada"), await seed("bob")
    mine = await new_chat(container, await new_project(ada), ada, "Budget for spring")
    shared_project = await new_project(bob, (ada, "viewer"))
    shared = await new_chat(container, shared_project, bob, "Budget review")
    await new_chat(container, await new_project(bob), bob, "Secret budget")

    response = await ada.call("GET", "/api/chats/search?q=budget&limit=10")

    assert response.status_code == 200, response.text
    hits = response.json()
    assert {h["chatId"] for h in hits} == {mine, shared}
    hit = next(h for h in hits if h["chatId"] == shared)
    assert hit == {
        "chatId": shared, "projectId": shared_project, "title": "Budget review",
        "snippet": "", "updatedAt": hit["updatedAt"], "pinned": False, "archived": False,
    }  # fmt: skip


async def test_search_without_words_finds_nothing(seed: SeedCaller) -> None:
    ada = await seed("ada")
    response = await ada.call("GET", "/api/chats/search")
    assert (response.status_code, response.json()) == (200, [])


async def test_chat_routes_need_a_credential(client: AsyncTestClient[Litestar]) -> None:
    for path in ["/api/chats", "/api/chats/search?q=x", f"/api/chats/{uuid.uuid4()}"]:
        assert (await client.get(path)).status_code == 401


BODIES_THAT_ARE_NOT_TEXT = {
    "lone high surrogate": (b'{"title": "a\\ud800b"}', LONE_SURROGATE),
    "high surrogate last": (b'{"title": "\\uDBFF"}', LONE_SURROGATE),
    "lone low surrogate": (b'{"title": "a\\udc00"}', LONE_SURROGATE),
    "invalid UTF-8": (b'{"title": "ok\xff"}', "JSON is malformed: the body is not valid UTF-8."),
    "truncated": (b'{"title": "abc', "Input data was truncated"),
}


@pytest.mark.parametrize("name", BODIES_THAT_ARE_NOT_TEXT)
async def test_a_body_that_is_not_text_is_400_saying_why_and_changes_nothing(
    seed: SeedCaller, container: FakeContainer, client: AsyncTestClient[Litestar], name: str
) -> None:
    ada = await seed("ada")
    chat_id = await new_chat(container, await new_project(ada), ada, title="Kept")
    raw, detail = BODIES_THAT_ARE_NOT_TEXT[name]
    headers = {**ada.headers, "content-type": "application/json"}

    response = await client.patch(f"/api/chats/{chat_id}", content=raw, headers=headers)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == detail
    assert (await ada.call("GET", f"/api/chats/{chat_id}")).json()["title"] == "Kept"


@pytest.mark.parametrize(
    ("raw", "title"),
    [(b'{"title": "\\ud83d\\ude00"}', "\U0001f600"), (b'{"title": "\\\\ud800"}', "\\ud800")],
    ids=["surrogate pair", "escaped backslash"],
)
async def test_a_surrogate_pair_or_an_escaped_backslash_is_text(
    seed: SeedCaller, container: FakeContainer, client: AsyncTestClient[Litestar],
    raw: bytes, title: str,
) -> None:  # fmt: skip
    ada = await seed("ada")
    chat_id = await new_chat(container, await new_project(ada), ada)
    headers = {**ada.headers, "content-type": "application/json"}

    response = await client.patch(f"/api/chats/{chat_id}", content=raw, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["title"] == title


# --- export ---------------------------------------------------------------------------------------
async def _exported_chat(container: FakeContainer, project_id: str, ada: Caller) -> str:
    """ "Impôts 2026": a system prompt, a question, a stopped reply (with reasoning), a
    question, a failed one."""
    chat_id = await new_chat(container, project_id, ada, "Impôts 2026")
    async with container.uow() as uow:
        chat = await uow.chats.get(UUID(chat_id))
        chat.instruct("Be brief.\nCite the law.", container.clock.now())
        await uow.chats.update(chat)
        await uow.commit()
    now = container.clock.now()
    for question, status, text in [
        ("How much?", MessageStatus.ABORTED, "It depends"),
        ("And now?", MessageStatus.FAILED, ""),
    ]:
        await add_message(container, chat_id, Message.from_user(
            id=container.ids.new_id(), chat_id=UUID(chat_id), content=question, now=now,
        ))  # fmt: skip
        reply = Message.pending_reply(
            id=container.ids.new_id(), chat_id=UUID(chat_id), model="openai/gpt-4o-mini",
            provider="openai", now=now,
        )  # fmt: skip
        error = "provider_error" if status is MessageStatus.FAILED else None
        thought = "Taxes vary.\nBy country." if text else ""
        reply.finish(
            status=status, content=text, now=now, usage=TokenUsage(), error=error,
            reasoning=thought,
        )  # fmt: skip
        await add_message(container, chat_id, reply)
    return chat_id


async def test_a_member_exports_a_chat_as_markdown(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, vic = await seed("ada"), await seed("vic")
    project_id = await new_project(ada, (vic, "viewer"))
    chat_id = await _exported_chat(container, project_id, ada)

    response = await vic.call("GET", f"/api/chats/{chat_id}/export")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Impots 2026.md\"; filename*=UTF-8''Imp%C3%B4ts%202026.md"
    )
    text = response.text
    assert text.startswith("# Impôts 2026\n\n")
    assert "**System prompt**\n\n> Be brief.\n> Cite the law.\n" in text
    assert text.index("How much?") < text.index("It depends") < text.index("And now?")
    assert "*Reasoning*\n\n> Taxes vary.\n> By country.\n\nIt depends" in text
    assert text.count("*Reasoning*") == 1
    assert "**Assistant (openai/gpt-4o-mini)**" in text
    assert "*(stopped before the end)*" in text
    assert "*(failed: provider_error)*" in text
    assert text.count("**User**") == 2


async def test_the_json_export_is_the_chat_as_read_and_a_stranger_gets_404(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, sam = await seed("ada"), await seed("sam")
    chat_id = await _exported_chat(container, await new_project(ada), ada)

    exported = await ada.call("GET", f"/api/chats/{chat_id}/export?format=json")
    read = await ada.call("GET", f"/api/chats/{chat_id}")
    stranger = await sam.call("GET", f"/api/chats/{chat_id}/export")
    missing = await sam.call("GET", f"/api/chats/{uuid.uuid4()}/export")
    bad = await ada.call("GET", f"/api/chats/{chat_id}/export?format=pdf")

    assert exported.status_code == 200, exported.text
    assert exported.headers["content-disposition"].endswith("Imp%C3%B4ts%202026.json")
    assert exported.json() == read.json()
    assert stranger.status_code == missing.status_code == 404
    assert stranger.json()["code"] == missing.json()["code"]
    assert bad.status_code == 400
    assert "format" in bad.text


# --- feedback -------------------------------------------------------------------------------------
async def test_a_reader_rates_a_reply_sees_it_with_the_chat_and_takes_it_back(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, vic = await seed("ada"), await seed("vic")
    project_id = await new_project(ada, (vic, "viewer"))
    chat_id = await new_chat(container, project_id, ada)
    now = container.clock.now()
    reply = Message.pending_reply(id=container.ids.new_id(), chat_id=UUID(chat_id),
                                  model="dev/echo", provider="dev", now=now)  # fmt: skip
    reply.finish(status=MessageStatus.COMPLETE, content="Yes.", now=now, usage=TokenUsage())
    await add_message(container, chat_id, reply)
    url = f"/api/chats/{chat_id}/messages/{reply.id}/feedback"

    rated = await vic.call("PUT", url, {"rating": "down", "comment": "Too short."})
    seen = (await vic.call("GET", f"/api/chats/{chat_id}")).json()["messages"][0]["feedback"]
    not_ada = (await ada.call("GET", f"/api/chats/{chat_id}")).json()["messages"][0]["feedback"]
    bad = await vic.call("PUT", url, {"rating": "meh"})
    removed = await vic.call("DELETE", url)
    after = (await vic.call("GET", f"/api/chats/{chat_id}")).json()["messages"][0]["feedback"]

    assert rated.status_code == 200, rated.text
    assert rated.json() == {
        "rating": "down", "comment": "Too short.", "updatedAt": rated.json()["updatedAt"],
    }  # fmt: skip
    assert seen == rated.json()
    assert not_ada is None
    assert bad.status_code == 400
    assert "rating" in bad.text
    assert removed.status_code == 204
    assert after is None


async def test_a_stranger_rating_a_reply_gets_404_like_a_missing_chat(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, sam = await seed("ada"), await seed("sam")
    chat_id = await new_chat(container, await new_project(ada), ada)
    reply = Message.pending_reply(
        id=container.ids.new_id(), chat_id=UUID(chat_id), model="dev/echo", provider="dev",
        now=container.clock.now(),
    )  # fmt: skip
    await add_message(container, chat_id, reply)
    path = f"/messages/{reply.id}/feedback"

    stranger = await sam.call("PUT", f"/api/chats/{chat_id}{path}", {"rating": "up"})
    missing = await sam.call("PUT", f"/api/chats/{uuid.uuid4()}{path}", {"rating": "up"})
    in_progress = await ada.call("PUT", f"/api/chats/{chat_id}{path}", {"rating": "up"})

    assert stranger.status_code == missing.status_code == 404
    assert stranger.json()["code"] == missing.json()["code"] == "chat_not_found"
    assert (in_progress.status_code, in_progress.json()["code"]) == (409, "reply_in_progress")


# --- pinning and archiving --------------------------------------------------------------------
async def test_an_editor_pins_and_archives_a_chat_and_the_list_filters_on_it(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada, eve = await seed("ada"), await seed("eve")
    project_id = await new_project(ada, (eve, "editor"))
    kept, pinned, archived = [await new_chat(container, project_id, ada) for _ in range(3)]
    listed = f"/api/chats?projectId={project_id}"
    before = {c["id"]: c for c in (await ada.call("GET", listed)).json()["items"]}

    pin = await eve.call("PATCH", f"/api/chats/{pinned}", {"pinned": True})
    archive = await eve.call("PATCH", f"/api/chats/{archived}", {"archived": True, "title": "Old"})

    assert pin.status_code == archive.status_code == 200, (pin.text, archive.text)
    assert (pin.json()["pinned"], pin.json()["archived"], pin.json()["archivedAt"]) == (
        True, False, None,
    )  # fmt: skip
    assert pin.json()["pinnedAt"] is not None
    assert pin.json()["updatedAt"] == before[pinned]["updatedAt"]  # not moved
    assert (archive.json()["archived"], archive.json()["title"]) == (True, "Old")
    read = (await ada.call("GET", f"/api/chats/{archived}")).json()
    assert (read["archived"], read["archivedAt"]) == (True, archive.json()["archivedAt"])

    async def ids(query: str) -> list[str]:
        response = await ada.call("GET", f"{listed}{query}")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids("") == await ids("&archived=false") == [pinned, kept]
    assert await ids("&archived=true") == [archived]
    assert await ids("&pinned=true") == [pinned]
    assert await ids("&pinned=false") == [kept]
    hits = (await ada.call("GET", "/api/chats/search?q=old")).json()
    assert [(h["chatId"], h["archived"], h["pinned"]) for h in hits] == [(archived, True, False)]


@pytest.mark.parametrize(
    "body", [{"pinned": "yes"}, {"pinned": 2}, {"archived": None}, {"archived": []}]
)
async def test_a_flag_that_is_not_a_boolean_is_refused_naming_the_field(
    seed: SeedCaller, container: FakeContainer, body: dict[str, Any]
) -> None:
    ada = await seed("ada")
    chat_id = await new_chat(container, await new_project(ada), ada)
    before = (await ada.call("GET", f"/api/chats/{chat_id}")).json()

    response = await ada.call("PATCH", f"/api/chats/{chat_id}", body)

    # the house rule (test_hostile_inputs): a body the schema refuses is 400 validation_failed.
    # (Litestar converts bodies laxly, app-wide: 0/1 and "true"/"false" are read as booleans.)
    assert (response.status_code, response.json()["code"]) == (400, "validation_failed")
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["key"] for e in response.json()["errors"]] == list(body)
    assert (await ada.call("GET", f"/api/chats/{chat_id}")).json() == before


async def test_pinning_an_archived_chat_is_422_naming_the_field(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada = await seed("ada")
    chat_id = await new_chat(container, await new_project(ada), ada)

    both = await ada.call("PATCH", f"/api/chats/{chat_id}", {"pinned": True, "archived": True})

    assert (both.status_code, both.json()["code"]) == (422, "invalid_input")
    assert both.json()["field"] == "pinned"


@pytest.mark.parametrize("query", ["archived=maybe", "pinned=2"])
async def test_a_list_filter_that_is_not_a_boolean_is_400(seed: SeedCaller, query: str) -> None:
    ada = await seed("ada")
    response = await ada.call("GET", f"/api/chats?{query}")
    assert (response.status_code, response.json()["code"]) == (400, "validation_failed")
    assert query.split("=")[0] in response.text
