"""A bug hunt (a helper's) of three features added together: chat forks (``POST
/api/chats/{id}/fork``), presets (``/api/presets`` and ``presetId`` on a start) and structured
outputs on ``/v1`` (``response_format``), end to end on the real app, Postgres and Redis, the
providers fakes on loopback speaking their real wire protocol. Each test asserts what the README
promises or, where it is silent, what a user would obviously expect (said so in its docstring).
Its 5 findings (6 tests) were fixed; their tests stay as regressions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_attach_elsewhere import team_project
from tests.integration.http.test_chat_flow import Chat, _text
from tests.integration.http.test_chat_fork import conversation, fork
from tests.integration.http.test_chat_regenerate import messages, regenerate
from tests.integration.http.test_presets import create, preset
from tests.integration.http.test_v1_structured_outputs import JSON_SCHEMA, JSON_TEXT, SCHEMA
from tests.integration.http.test_v1_tools import CLAUDE, GPT, TOOLS, Providers, providers
from tests.support.fake_providers import (
    API_KEY,
    JSON_PIECES,
    Reply,
    ScriptedCall,
    anthropic_error,
    anthropic_tool_stream,
    split_pieces,
)
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.resolve import resolved
from tests.unit.test_chatgpt_export import T, message
from tests.unit.test_chatgpt_export import conversation as exported
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.attachments import Attachment, ExtractionResult

__all__ = ["providers"]  # the fixture of the /v1 tests

MODEL = "openai/gpt-4o-mini"
PROBLEM = "application/problem+json"


def _problem(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"] == PROBLEM, response.text
    body: dict[str, Any] = response.json()
    return body


async def _chats(chat: Chat, auth: dict[str, str], project_id: str | None = None) -> list[str]:
    query = {} if project_id is None else {"projectId": project_id}
    listed = await chat.client.get("/api/chats", params=query, headers=auth)
    assert listed.status_code == 200, listed.text
    return [c["id"] for c in listed.json()["items"]]


async def _import(chat: Chat, auth: dict[str, str], doc: dict[str, Any]) -> str:
    response = await chat.client.post(
        "/api/chats/import", json={"format": "chatgpt", "conversations": [doc]}, headers=auth
    )
    assert response.status_code == 201, response.text
    chat_id: str = response.json()["imported"][0]["chatId"]
    return chat_id


async def _plan(chat: Chat, user: dict[str, Any], plan: str) -> None:
    admin = await chat.world.create_admin()
    changed = await chat.client.patch(
        f"/api/admin/users/{user['user']['id']}", json={"plan": plan}, headers=admin
    )
    assert changed.status_code == 200, changed.text


# === forks ======================================================================================
async def test_a_fork_of_a_fork_copies_the_copy_under_new_ids(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "one", "two", systemPrompt="Be kind.")
    first = (await fork(chat, chat_id, alice["auth"])).json()

    second = await fork(chat, first["id"], alice["auth"], messageId=first["messages"][1]["id"])

    assert second.status_code == 201, second.text
    body = second.json()
    assert body["systemPrompt"] == "Be kind."
    assert [m["content"] for m in body["messages"]] == ["one", "one"]
    assert not {m["id"] for m in body["messages"]} & {m["id"] for m in first["messages"]}
    assert len(await messages(chat, first["id"], alice["auth"])) == 4


async def test_a_fork_at_the_first_question_can_be_answered_by_another_message(
    chat: Chat,
) -> None:
    """The README: go on from a fork with a start."""
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "first", "second")
    original = await messages(chat, chat_id, alice["auth"])

    forked = await fork(chat, chat_id, alice["auth"], messageId=original[0]["id"])
    assert forked.status_code == 201, forked.text
    assert [m["role"] for m in forked.json()["messages"]] == ["user"]
    started = await chat.start(
        alice["auth"], model="dev/echo", message="again", chatId=forked.json()["id"]
    )

    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    contents = [m["content"] for m in await messages(chat, forked.json()["id"], alice["auth"])]
    assert contents == ["first", "again", "again"]


async def test_a_forked_imported_chat_is_regenerated_only_once_a_model_is_named(
    chat: Chat,
) -> None:
    """The README: 422 on ``model`` for an imported reply until one is named."""
    alice = await chat.world.register("alice")
    nodes = [
        ("u1", None, message("user", "imported question", at=T)),
        ("a1", "u1", message("assistant", "imported answer", at=T + 1)),
    ]
    chat_id = await _import(chat, alice["auth"], exported(nodes, current="a1"))
    forked = (await fork(chat, chat_id, alice["auth"])).json()
    assert forked["messages"][1]["provider"] == "imported"

    refused = await regenerate(chat, alice["auth"], chatId=forked["id"])
    named = await regenerate(chat, alice["auth"], chatId=forked["id"], model="dev/echo")

    assert _problem(refused, 422)["field"] == "model"
    assert named.status_code == 201, named.text
    await chat.events(named.json()["sessionId"])
    read = await messages(chat, forked["id"], alice["auth"])
    assert [(m["content"], m["model"]) for m in read] == [
        ("imported question", None), ("imported question", "dev/echo")
    ]  # fmt: skip
    original = await messages(chat, chat_id, alice["auth"])
    assert original[1]["content"] == "imported answer"


async def test_a_fork_of_more_than_a_thousand_messages_keeps_all_of_them_in_order(
    chat: Chat,
) -> None:
    """Written in batches (bulk.BATCH): every message arrives, in the order it had, even when
    they all carry the same time (the export gave them one)."""
    alice = await chat.world.register("alice")
    nodes: list[tuple[str, str | None, dict[str, Any] | None]] = [
        (f"n{i}", f"n{i - 1}" if i else None,
         message("assistant" if i % 2 else "user", f"turn {i}", at=T))
        for i in range(2_101)
    ]  # fmt: skip
    chat_id = await _import(chat, alice["auth"], exported(nodes, current="n2100"))

    forked = await fork(chat, chat_id, alice["auth"])

    assert forked.status_code == 201, forked.text
    expected = [f"turn {i}" for i in range(2_101)]
    assert [m["content"] for m in forked.json()["messages"]] == expected
    read = await messages(chat, forked.json()["id"], alice["auth"])
    assert [m["content"] for m in read] == expected


async def test_a_fork_counts_no_usage_again(chat: Chat) -> None:
    """Copies of replies are not new requests: the usage summary is the same after a fork."""
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model=MODEL, message=f"count {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    before = (await chat.client.get("/api/usage", headers=alice["auth"])).json()

    assert (await fork(chat, started["chatId"], alice["auth"])).status_code == 201
    after = (await chat.client.get("/api/usage", headers=alice["auth"])).json()

    assert after == before
    assert after["total"]["requests"] == 1


async def test_a_fork_is_searched_exported_shared_and_rated_as_its_own_chat(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    word = f"quokka{uuid.uuid4().hex[:10]}"
    chat_id = await conversation(chat, alice["auth"], f"tell me about {word}")
    forked = (await fork(chat, chat_id, alice["auth"], title="Branch")).json()
    reply_id = forked["messages"][1]["id"]

    found = await chat.client.get("/api/chats/search", params={"q": word}, headers=alice["auth"])
    export = await chat.client.get(f"/api/chats/{forked['id']}/export", headers=alice["auth"])
    shared = await chat.client.post(f"/api/chats/{forked['id']}/shares", headers=alice["auth"])
    rated = await chat.client.put(
        f"/api/chats/{forked['id']}/messages/{reply_id}/feedback", json={"rating": "up"},
        headers=alice["auth"],
    )  # fmt: skip

    assert found.status_code == 200, found.text
    assert {h["chatId"] for h in found.json()} == {chat_id, forked["id"]}
    assert export.status_code == 200
    assert word in export.text
    assert shared.status_code == 201, shared.text
    link = await chat.client.get(shared.json()["url"])
    assert link.json()["messages"][0]["content"] == f"tell me about {word}"
    assert rated.status_code in (200, 201, 204), rated.text
    original = await messages(chat, chat_id, alice["auth"])
    assert original[1]["feedback"] is None


async def test_a_fork_by_an_editor_into_the_team_project_is_the_teams_and_keeps_its_place(
    chat: Chat,
) -> None:
    """Owners and editors may fork into the project; the owner then reads the fork."""
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    project_id, _ = await team_project(chat, alice, bob, "editor")
    chat_id = await conversation(chat, alice["auth"], "team talk", projectId=project_id)

    forked = await fork(chat, chat_id, bob["auth"], projectId=project_id)

    assert forked.status_code == 201, forked.text
    assert forked.json()["projectId"] == project_id
    read = await chat.client.get(f"/api/chats/{forked.json()['id']}", headers=alice["auth"])
    assert read.status_code == 200
    assert (await _chats(chat, alice["auth"], project_id))[0] == forked.json()["id"]


async def _extracted_file(chat: Chat, user: dict[str, Any], project_id: str, text: str) -> str:
    """A file of ``project_id``'s, extracted (``text``), written as the upload path would."""
    now = datetime.now(UTC)
    file_id, project = uuid.uuid4(), uuid.UUID(project_id)
    attachment = Attachment(
        id=file_id, project_id=project, user_id=uuid.UUID(user["user"]["id"]),
        object_key=Attachment.key_for(project, file_id), filename="budget.pdf",
        content_type="application/pdf", size_bytes=10, sha256="0" * 64, created_at=now,
        updated_at=now,
    )  # fmt: skip
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        await uow.attachments.add(attachment)
        await uow.commit()
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        stored = await uow.attachments.get_for_update(file_id)
        stored.start_processing(now)
        stored.complete(ExtractionResult(text=text, method="text"), now)
        await uow.attachments.update(stored)
        await uow.commit()
    return str(file_id)


async def test_attachment_links_stay_in_a_fork_within_the_project_and_go_elsewhere(
    chat: Chat,
) -> None:
    """The README: attachment links are kept only within the chat's project. Kept, they are
    read again by a regeneration in the fork; dropped, the fork still goes on."""
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    project_id, _ = await team_project(chat, alice, bob, "editor")
    secret = f"budget{uuid.uuid4().hex[:8]}"
    file_id = await _extracted_file(chat, alice, project_id, f"The {secret} is 42.")
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Summarise {uuid.uuid4()}", projectId=project_id,
        attachmentIds=[file_id],
    )  # fmt: skip
    await chat.events(started["sessionId"])

    in_team = (await fork(chat, started["chatId"], bob["auth"], projectId=project_id)).json()
    elsewhere = (await fork(chat, started["chatId"], bob["auth"])).json()

    assert in_team["messages"][0]["attachmentIds"] == [file_id]
    assert elsewhere["messages"][0]["attachmentIds"] == []
    for forked, sees_file in ((in_team, True), (elsewhere, False)):
        calls = len(chat.provider.requests)
        again = await regenerate(chat, bob["auth"], chatId=forked["id"])
        assert again.status_code == 201, again.text
        assert (await chat.events(again.json()["sessionId"]))[-1][1] == "done"
        sent = json.dumps(chat.provider.requests[calls].body["messages"])
        assert (secret in sent) is sees_file


async def test_a_fork_leaves_the_chat_forked_from_where_it_was_in_the_list(chat: Chat) -> None:
    """The README: the chat forked from is unchanged (so it does not move up the list)."""
    alice = await chat.world.register("alice")
    older = await conversation(chat, alice["auth"], "older")
    newer = await conversation(chat, alice["auth"], "newer")
    before = (await chat.client.get(f"/api/chats/{older}", headers=alice["auth"])).json()

    forked = (await fork(chat, older, alice["auth"])).json()

    assert await _chats(chat, alice["auth"]) == [forked["id"], newer, older]
    after = (await chat.client.get(f"/api/chats/{older}", headers=alice["auth"])).json()
    assert after == before
    assert forked["createdAt"] == forked["updatedAt"] >= before["updatedAt"]


async def test_a_fork_of_a_pinned_archived_chat_is_neither_and_is_listed(chat: Chat) -> None:
    """The fork's rules: not the pin or the archive mark."""
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "keep me")
    url = f"/api/chats/{chat_id}"
    assert (await chat.client.patch(url, json={"pinned": True}, headers=alice["auth"])).is_success
    archived = await chat.client.patch(url, json={"archived": True}, headers=alice["auth"])
    assert archived.status_code == 200, archived.text

    forked = (await fork(chat, chat_id, alice["auth"])).json()

    assert (forked["pinned"], forked["archived"]) == (False, False)
    assert await _chats(chat, alice["auth"]) == [forked["id"]]
    assert (await chat.client.get(url, headers=alice["auth"])).json()["archived"] is True


async def test_a_fork_ending_on_a_question_is_answered_by_a_regeneration(
    chat: Chat,
) -> None:
    """The hunt found a fork ending on a question could only be followed by another question
    (its regeneration was a 409); it is now answered, nothing replaced, by the model named."""
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "question one")
    question = (await messages(chat, chat_id, alice["auth"]))[0]
    forked = (await fork(chat, chat_id, alice["auth"], messageId=question["id"])).json()

    unnamed = await regenerate(chat, alice["auth"], chatId=forked["id"])
    again = await regenerate(chat, alice["auth"], chatId=forked["id"], model="dev/echo")

    _problem(unnamed, 422)
    assert unnamed.json()["field"] == "model"
    assert again.status_code == 201, again.text
    assert again.json()["replacedMessageId"] is None
    assert _text(await chat.events(again.json()["sessionId"])) == "question one"
    assert [m["content"] for m in await messages(chat, forked["id"], alice["auth"])] == [
        "question one", "question one"
    ]  # fmt: skip


async def test_a_member_removed_can_no_longer_fork_the_chat_or_into_the_project(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    project_id, bob_id = await team_project(chat, alice, bob, "editor")
    chat_id = await conversation(chat, alice["auth"], "secret plan", projectId=project_id)
    own_id = await conversation(chat, bob["auth"], "bob's own")
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{bob_id}", headers=alice["auth"]
    )
    assert removed.status_code == 204, removed.text
    before = await _chats(chat, bob["auth"])

    of_team_chat = await fork(chat, chat_id, bob["auth"])
    into_team = await fork(chat, own_id, bob["auth"], projectId=project_id)

    assert (of_team_chat.status_code, of_team_chat.json()["code"]) == (404, "chat_not_found")
    _problem(into_team, 403, 404)
    assert await _chats(chat, bob["auth"]) == before


async def test_a_deleted_chat_cannot_be_forked(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "soon gone")
    gone = await chat.client.delete(f"/api/chats/{chat_id}", headers=alice["auth"])
    assert gone.status_code == 204

    response = await fork(chat, chat_id, alice["auth"])

    assert (response.status_code, response.json()["code"]) == (404, "chat_not_found")
    assert await _chats(chat, alice["auth"]) == []


BAD_FORK_BODIES: list[tuple[str, Any]] = [
    ("an array", [1, 2]),
    ("a string", "fork"),
    ("messageId not a uuid", {"messageId": "nope"}),
    ("title with NUL", {"title": "a\u0000b"}),
    ("title a number", {"title": 7}),
    ("unknown project", {"projectId": str(uuid.uuid4())}),
    ("title empty", {"title": ""}),
]


@pytest.mark.parametrize(
    "body", [b for _, b in BAD_FORK_BODIES], ids=[n for n, _ in BAD_FORK_BODIES]
)
async def test_a_bad_fork_body_is_a_4xx_problem_and_writes_nothing(chat: Chat, body: Any) -> None:
    alice = await chat.world.register("alice")
    chat_id = await conversation(chat, alice["auth"], "one")

    response = await chat.client.post(
        f"/api/chats/{chat_id}/fork", json=body, headers=alice["auth"]
    )

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM
    assert await _chats(chat, alice["auth"]) == [chat_id]


async def test_a_fork_into_a_shared_project_does_not_carry_the_users_custom_instructions(
    chat: Chat,
) -> None:
    """The README: custom instructions are private, and 'a chat in a shared project never gets
    them (every member reads its system prompt)'. A personal chat got them as its system
    prompt; forking it into a team project hands them to every member."""
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    secret = f"I am recovering from surgery {uuid.uuid4()}"
    patched = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": secret}, headers=alice["auth"]
    )
    assert patched.status_code == 200, patched.text
    project_id, _ = await team_project(chat, alice, bob, "viewer")
    chat_id = await conversation(chat, alice["auth"], "private question")
    own = await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])
    assert own.json()["systemPrompt"] == secret

    forked = await fork(chat, chat_id, alice["auth"], projectId=project_id)
    assert forked.status_code == 201, forked.text
    seen = await chat.client.get(f"/api/chats/{forked.json()['id']}", headers=bob["auth"])

    assert seen.status_code == 200
    assert seen.json()["systemPrompt"] != secret


# === presets ====================================================================================
async def test_a_nul_in_a_presets_name_is_a_422_naming_the_field(chat: Chat) -> None:
    alice = await chat.world.register("alice")

    response = await create(chat, alice["auth"], name="Co\u0000der", model=MODEL)

    assert _problem(response, 422)["field"] == "name"


async def test_a_nul_in_a_presets_new_name_is_a_422_naming_the_field(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"])

    response = await chat.client.patch(
        f"/api/presets/{made['id']}", json={"name": "a\u0000b"}, headers=alice["auth"]
    )

    assert _problem(response, 422)["field"] == "name"
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == [made]


async def test_a_stop_sequence_a_start_takes_is_saved_in_a_preset_or_refused_by_name(
    chat: Chat,
) -> None:
    """A preset's parameters are a start's (the same ``params`` body): what a start takes (a
    stop sequence holding NUL: the start answers 201) a preset should save, or at least refuse
    naming the field, not with Postgres's 'A value could not be stored.'"""
    alice = await chat.world.register("alice")
    params = {"model": "dev/echo", "message": "hi", "params": {"stop": ["a\u0000"]}}
    taken = await chat.client.post("/api/chat/start", json=params, headers=alice["auth"])
    assert taken.status_code == 201, taken.text

    response = await create(
        chat, alice["auth"], name="n", model=MODEL, params={"stop": ["a\u0000"]}
    )

    if response.status_code == 201:
        assert response.json()["params"] == {"stop": ["a\u0000"]}
    else:
        assert _problem(response, 422).get("field") in ("params", "params.stop", "stop")


async def test_a_nul_in_a_presets_system_prompt_is_a_422_naming_the_field(chat: Chat) -> None:
    alice = await chat.world.register("alice")

    response = await create(chat, alice["auth"], name="n", model=MODEL, systemPrompt="a\u0000")

    assert _problem(response, 422)["field"] == "systemPrompt"


async def test_unicode_names_count_characters_and_the_limits_are_exact(chat: Chat) -> None:
    alice = await chat.world.register("alice")

    emoji = await create(chat, alice["auth"], name="🐳" * 80, model=MODEL)
    too_many = await create(chat, alice["auth"], name="🐳" * 81, model=MODEL)
    longest = await create(chat, alice["auth"], name="p", model=MODEL, systemPrompt="é" * 20_000)

    assert emoji.status_code == 201, emoji.text
    assert emoji.json()["name"] == "🐳" * 80
    assert _problem(too_many, 422)["field"] == "name"
    assert longest.status_code == 201, longest.text
    assert longest.json()["systemPrompt"] == "é" * 20_000


async def test_at_most_100_presets_then_a_422_and_a_deletion_makes_room(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    made = [await preset(chat, alice["auth"], name=f"p{i}") for i in range(100)]

    refused = await create(chat, alice["auth"], name="one more", model=MODEL)
    await chat.client.delete(f"/api/presets/{made[0]['id']}", headers=alice["auth"])
    again = await create(chat, alice["auth"], name="one more", model=MODEL)

    _problem(refused, 422)
    assert again.status_code == 201, again.text
    listed = (await chat.client.get("/api/presets", headers=alice["auth"])).json()
    assert len(listed) == 100
    assert [p["name"] for p in listed][-1] == "one more"  # oldest first


async def test_a_patch_changes_only_what_it_sends_and_null_or_blank_clears(chat: Chat) -> None:
    """The README/route: fields left out stay; params null clears them; a blank system prompt
    is none."""
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"], systemPrompt="Be terse.", params={"seed": 3})
    url = f"/api/presets/{made['id']}"

    empty = await chat.client.patch(url, json={}, headers=alice["auth"])
    renamed = await chat.client.patch(url, json={"name": "Other"}, headers=alice["auth"])
    blank = await chat.client.patch(url, json={"systemPrompt": "  "}, headers=alice["auth"])
    cleared = await chat.client.patch(url, json={"params": None}, headers=alice["auth"])
    same_model = await chat.client.patch(url, json={"model": MODEL}, headers=alice["auth"])

    for response in (empty, renamed, blank, cleared, same_model):
        assert response.status_code == 200, response.text
    assert (empty.json()["systemPrompt"], empty.json()["params"]) == ("Be terse.", {"seed": 3})
    assert (renamed.json()["name"], renamed.json()["params"]) == ("Other", {"seed": 3})
    assert blank.json()["systemPrompt"] is None
    assert cleared.json()["params"] == {}
    assert (same_model.json()["name"], same_model.json()["model"]) == ("Other", MODEL)
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == [
        same_model.json()
    ]


async def test_a_bad_patch_is_a_4xx_problem_and_changes_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"])
    url = f"/api/presets/{made['id']}"

    for body in ({"name": None}, {"model": None}, {"name": "  "}, {"model": ""}, {"x": 1},
                 {"params": {"maxTokens": 0}}):  # fmt: skip
        response = await chat.client.patch(url, json=body, headers=alice["auth"])
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.headers["content-type"] == PROBLEM
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == [made]


async def test_a_preset_whose_model_left_the_users_plan_is_refused_at_the_start(
    chat: Chat,
) -> None:
    """The model is checked again when the preset is used (the domain's rules): 403, nothing
    written; the preset itself stays and can be renamed."""
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    made = await preset(chat, alice["auth"], model="openai/gpt-4o")
    await _plan(chat, alice, "free")

    started = await chat.client.post(
        "/api/chat/start", json={"presetId": made["id"], "message": "hi"}, headers=alice["auth"]
    )
    renamed = await chat.client.patch(
        f"/api/presets/{made['id']}", json={"name": "Big"}, headers=alice["auth"]
    )

    assert (started.status_code, started.json()["code"]) == (403, "model_not_in_plan")
    assert await _chats(chat, alice["auth"]) == []
    assert renamed.status_code == 200, renamed.text
    overridden = await chat.start(
        alice["auth"], presetId=made["id"], model="dev/echo", message="hi"
    )  # a model the start names replaces the preset's
    assert (await chat.events(overridden["sessionId"]))[-1][1] == "done"


async def test_a_preset_for_a_provider_not_configured_is_refused(chat: Chat) -> None:
    """This app has no Anthropic key: the model is not one the caller may use now (404)."""
    alice = await chat.world.register("alice")

    response = await create(chat, alice["auth"], name="Claude", model=CLAUDE)

    assert _problem(response, 404)["code"] == "model_not_found"


async def test_a_preset_whose_provider_was_turned_off_is_refused_and_kept(
    chat: Chat, stack_urls: StackUrls, unique: str
) -> None:
    """The domain's rules: the model is checked again when the preset is used (a provider may
    have been turned off since): 404 at the start, nothing written; the preset is still listed
    and can be changed to a model that works."""
    async with chat_app(
        stack_urls, unique, WHALLI_ANTHROPIC_API_KEY=API_KEY,
        WHALLI_ANTHROPIC_BASE_URL="http://127.0.0.1:9",
    ) as with_claude:  # fmt: skip
        alice = await with_claude.world.register("alice")
        made = await preset(with_claude, alice["auth"], name="Claude", model=CLAUDE)

    started = await chat.client.post(
        "/api/chat/start", json={"presetId": made["id"], "message": "hi"}, headers=alice["auth"]
    )
    listed = await chat.client.get("/api/presets", headers=alice["auth"])
    changed = await chat.client.patch(
        f"/api/presets/{made['id']}", json={"model": MODEL}, headers=alice["auth"]
    )

    assert _problem(started, 404)["code"] == "model_not_found"
    assert await _chats(chat, alice["auth"]) == []
    assert listed.json() == [made]
    assert changed.status_code == 200, changed.text


async def test_an_unknown_or_malformed_preset_id_is_a_4xx_problem(chat: Chat) -> None:
    alice = await chat.world.register("alice")

    unknown = await chat.client.post(
        "/api/chat/start", json={"presetId": str(uuid.uuid4()), "message": "hi"},
        headers=alice["auth"],
    )  # fmt: skip
    malformed = await chat.client.post(
        "/api/chat/start", json={"presetId": "coder", "message": "hi"}, headers=alice["auth"]
    )

    assert _problem(unknown, 404)["code"] == "preset_not_found"
    _problem(malformed, 400, 422)
    assert await _chats(chat, alice["auth"]) == []


async def test_a_preset_with_a_chat_id_gives_its_parameters_to_the_existing_chat(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    made = await preset(
        chat, alice["auth"], systemPrompt="Preset voice.",
        params={"temperature": 0.4, "maxTokens": 77, "stop": ["END"]},
    )  # fmt: skip
    first = await chat.start(alice["auth"], model=MODEL, message=f"a {uuid.uuid4()}")
    await chat.events(first["sessionId"])
    calls = len(chat.provider.requests)

    second = await chat.start(
        alice["auth"], presetId=made["id"], chatId=first["chatId"], message="b", cache=False,
        params={"stop": ["HALT"]},
    )  # fmt: skip
    assert (await chat.events(second["sessionId"]))[-1][1] == "done"

    sent = chat.provider.requests[calls].body
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.4, 77)
    assert sent["stop"] == ["HALT"]  # the start's list replaces the preset's, not merged
    assert sent["messages"][0]["role"] == "user"  # the chat keeps its own (no) system prompt


async def test_a_presets_instructions_win_over_custom_ones_which_fill_in_when_it_has_none(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "Mine."}, headers=alice["auth"]
    )
    with_prompt = await preset(chat, alice["auth"], systemPrompt="The preset's.")
    without = await preset(chat, alice["auth"], name="Plain")

    a = await chat.start(alice["auth"], presetId=with_prompt["id"], message="one")
    b = await chat.start(alice["auth"], presetId=without["id"], message="two")
    c = await chat.start(alice["auth"], presetId=with_prompt["id"], message="three",
                         systemPrompt="")  # fmt: skip

    prompts = []
    for started in (a, b, c):
        await chat.events(started["sessionId"])
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
        prompts.append(read.json()["systemPrompt"])
    assert prompts == ["The preset's.", "Mine.", None]


async def test_in_a_shared_project_a_preset_without_instructions_adds_no_custom_ones(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "Private."}, headers=alice["auth"]
    )
    project_id, _ = await team_project(chat, alice, bob, "viewer")
    made = await preset(chat, alice["auth"])

    started = await chat.start(
        alice["auth"], presetId=made["id"], message="team", projectId=project_id
    )
    await chat.events(started["sessionId"])

    read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=bob["auth"])
    assert read.json()["systemPrompt"] is None


async def test_two_presets_with_other_instructions_do_not_share_a_cached_answer(
    chat: Chat,
) -> None:
    """The README: a chat's system prompt is part of the cache key; a preset's is the chat's."""
    alice = await chat.world.register("alice")
    pirate = await preset(chat, alice["auth"], systemPrompt="You are a pirate.")
    cat = await preset(chat, alice["auth"], systemPrompt="You are a cat.")
    question = f"who are you {uuid.uuid4()}"

    done = []
    for made in (pirate, cat, pirate):
        started = await chat.start(alice["auth"], presetId=made["id"], message=question)
        done.append((await chat.events(started["sessionId"]))[-1][2]["cached"])

    assert done == [False, False, True]


async def test_a_regeneration_in_a_preset_chat_asks_again_with_the_replys_parameters(
    chat: Chat,
) -> None:
    """The README: a regeneration by the replaced reply's model takes the parameters that reply
    was asked with (here the preset's) where the request leaves them out; the chat keeps its
    system prompt. (This test pinned the opposite before 37643da: the parameters were lost.)"""
    alice = await chat.world.register("alice")
    made = await preset(
        chat, alice["auth"], systemPrompt="Short.", params={"temperature": 0.3, "maxTokens": 40}
    )
    started = await chat.start(alice["auth"], presetId=made["id"], message=f"q {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    calls = len(chat.provider.requests)

    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    assert again.status_code == 201, again.text
    await chat.events(again.json()["sessionId"])

    sent = chat.provider.requests[calls].body
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"][0] == {"role": "system", "content": "Short."}
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.3, 40)


async def test_presets_work_with_an_api_key_as_with_a_session(chat: Chat) -> None:
    """The README: an API key authenticates like a token."""
    alice = await chat.world.register("alice")
    key = await chat.client.post("/api/keys", json={"name": "k"}, headers=alice["auth"])
    by_key = {"X-API-Key": key.json()["secret"]}

    made = await create(chat, by_key, name="By key", model=MODEL)
    assert made.status_code == 201, made.text
    listed = await chat.client.get("/api/presets", headers=alice["auth"])
    removed = await chat.client.delete(f"/api/presets/{made.json()['id']}", headers=by_key)

    assert listed.json() == [made.json()]
    assert removed.status_code == 204


# === structured outputs on /v1 ==================================================================
class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    town: str
    postcode: str | None


class Person(BaseModel):
    name: str
    colour: Colour
    homes: list[Address]


PERSON = {
    "name": "Zoë",
    "colour": "blue",
    "homes": [{"town": "Liège", "postcode": None}, {"town": "東京", "postcode": "100"}],
}


def _asked() -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": f"Who? {uuid.uuid4()}"}]


def _claude_json(*pieces: str, text: tuple[str, ...] = ()) -> Reply:
    return Reply(
        chunks=anthropic_tool_stream([ScriptedCall("toolu_1", "json_response", pieces)], text)
    )


async def test_parse_with_nested_models_enums_and_optionals_through_openai(
    providers: Providers,
) -> None:
    text = json.dumps(PERSON, ensure_ascii=False)
    providers.openai.script(Reply(chunks=openai_pieces([text[:9], text[9:30], text[30:]])))

    completion = await providers.sdk.chat.completions.parse(
        model=GPT, messages=_asked(), response_format=Person
    )

    assert completion.choices[0].message.parsed == Person.model_validate(PERSON)
    sent = providers.openai.requests[-1].body["response_format"]["json_schema"]
    assert "$defs" in sent["schema"]
    assert sent["strict"] is True


async def test_parse_with_nested_models_through_claude_sends_the_defs_and_reads_the_input(
    providers: Providers,
) -> None:
    text = json.dumps(PERSON, ensure_ascii=False)
    providers.anthropic.script(_claude_json(text[:5], text[5:40], text[40:]))

    completion = await providers.sdk.chat.completions.parse(
        model=CLAUDE, messages=_asked(), response_format=Person
    )

    assert completion.choices[0].message.parsed == Person.model_validate(PERSON)
    [tool] = providers.anthropic.requests[-1].body["tools"]
    schema = tool["input_schema"]
    assert schema["type"] == "object"
    assert set(schema["$defs"]) == {"Address", "Colour"}
    assert schema["properties"]["homes"]["items"] == {"$ref": "#/$defs/Address"}


async def test_claudes_json_split_mid_character_and_mid_escape_comes_back_whole(
    providers: Providers,
) -> None:
    """The bytes of the stream cut every 7 bytes (inside UTF-8 characters and SSE lines), the
    JSON pieces cut inside an escape sequence: the text is the JSON exactly."""
    pieces = ['{"town": "Li', "\\u00e", '9ge \\"', '🌍\\"", "n": 1}']
    stream = anthropic_tool_stream([ScriptedCall("toolu_1", "json_response", pieces)])
    providers.anthropic.script(Reply(chunks=split_pieces(stream, 7)))

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format={"type": "json_object"}
    )

    content = completion.choices[0].message.content
    assert content == "".join(pieces)
    assert json.loads(content or "") == {"town": 'Liége "🌍"', "n": 1}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_empty_forced_tool_input_is_the_empty_object(
    providers: Providers, stream: bool
) -> None:
    providers.anthropic.script(_claude_json())
    sdk = providers.sdk.chat.completions

    if stream:
        chunks = await sdk.create(
            model=CLAUDE, messages=_asked(), response_format={"type": "json_object"}, stream=True
        )
        texts, reasons = [], []
        async for chunk in chunks:
            for choice in chunk.choices:
                texts.append(choice.delta.content or "")
                reasons.append(choice.finish_reason)
        content, reason = "".join(texts), [r for r in reasons if r][-1]
    else:
        done = await sdk.create(
            model=CLAUDE, messages=_asked(), response_format={"type": "json_object"}
        )
        content, reason = done.choices[0].message.content, done.choices[0].finish_reason

    assert (content, reason) == ("{}", "stop")


async def test_text_before_the_forced_tool_is_left_out_without_streaming_too(
    providers: Providers,
) -> None:
    providers.anthropic.script(_claude_json(*JSON_PIECES, text=("Sure! ", "Here:")))

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format=JSON_SCHEMA
    )

    assert completion.choices[0].message.content == JSON_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


async def test_a_forced_tool_cut_by_max_tokens_while_streaming_ends_with_length(
    providers: Providers,
) -> None:
    stream = [
        p.replace(b'"stop_reason": "tool_use"', b'"stop_reason": "max_tokens"')
        for p in anthropic_tool_stream([ScriptedCall("toolu_1", "json_response", ['{"gre'])])
    ]
    providers.anthropic.script(Reply(chunks=stream))

    chunks = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format=JSON_SCHEMA, stream=True
    )
    texts, reasons = [], []
    async for chunk in chunks:
        for choice in chunk.choices:
            texts.append(choice.delta.content or "")
            if choice.finish_reason:
                reasons.append(choice.finish_reason)

    assert ("".join(texts), reasons) == ('{"gre', ["length"])


async def test_a_formatted_claude_reply_reports_claudes_usage(providers: Providers) -> None:
    providers.anthropic.script(
        Reply(
            chunks=anthropic_tool_stream(
                [ScriptedCall("toolu_1", "json_response", JSON_PIECES)],
                input_tokens=31, output_tokens=17,
            )
        )
    )  # fmt: skip

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format={"type": "json_object"}
    )

    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (31, 17)


@pytest.mark.parametrize(
    ("json_schema", "expected"),
    [
        ({"name": "g", "schema": SCHEMA, "strict": False}, {"strict": False}),
        ({"name": "g", "schema": SCHEMA}, {}),
        ({"name": "g"}, {}),
    ],
    ids=["strict_false", "no_strict", "no_schema"],
)
async def test_openai_gets_strict_and_a_missing_schema_exactly_as_sent(
    providers: Providers, json_schema: dict[str, Any], expected: dict[str, Any]
) -> None:
    """The README: the format goes as it is to OpenAI."""
    response_format: Any = {"type": "json_schema", "json_schema": json_schema}

    await providers.sdk.chat.completions.create(
        model=GPT, messages=_asked(), response_format=response_format
    )

    sent = providers.openai.requests[-1].body["response_format"]
    assert sent == response_format
    assert {k: v for k, v in sent["json_schema"].items() if k == "strict"} == expected


async def test_claude_with_a_json_schema_without_schema_gets_any_object(
    providers: Providers,
) -> None:
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "free"}}

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format=response_format
    )

    assert completion.choices[0].message.content == JSON_TEXT
    [tool] = providers.anthropic.requests[-1].body["tools"]
    assert tool["input_schema"]["type"] == "object"


async def test_a_format_falls_back_from_claude_to_gpt_as_gpts_own_response_format(
    providers: Providers,
) -> None:
    """The README: a provider failing before the first token (a bad key) lets the catalog's
    fallback answer; the format must reach it in that provider's own form."""
    refused = Reply(status=401, body=anthropic_error("authentication_error", "bad key"))
    providers.anthropic.script(refused, refused, refused)

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format=JSON_SCHEMA
    )

    assert completion.choices[0].message.content == JSON_TEXT
    assert completion.model == GPT
    assert providers.openai.requests[-1].body["response_format"] == JSON_SCHEMA


async def test_a_format_after_tool_calls_with_openai_is_answered(providers: Providers) -> None:
    """The tool loop's last turn in JSON: OpenAI takes tools and a format together."""
    history: list[ChatCompletionMessageParam] = [
        *_asked(),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
    ]  # fmt: skip

    completion = await providers.sdk.chat.completions.create(
        model=GPT, messages=history, tools=TOOLS, response_format=JSON_SCHEMA
    )

    assert completion.choices[0].message.content == JSON_TEXT


async def test_a_format_after_tool_calls_with_claude_is_answered(providers: Providers) -> None:
    """anthropic_request's docstring: 'the caller can ask for the format on the turn after its
    tool calls'. That turn carries the calls and results, which Anthropic reads only with the
    tools (400 on ``tools`` without them), and a format with tools is a 400 too, even with
    ``tool_choice: "none"`` (no call wanted): no way through. Expected: one of these forms
    (the last is what an agent sends for its final, structured answer) is answered in JSON."""
    history: list[ChatCompletionMessageParam] = [
        *_asked(),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
    ]  # fmt: skip
    sdk = providers.sdk.chat.completions
    answers = []
    forms: list[dict[str, Any]] = [{}, {"tools": TOOLS}, {"tools": TOOLS, "tool_choice": "none"}]
    for extra in forms:
        try:
            done = await sdk.create(
                model=CLAUDE, messages=history, response_format=JSON_SCHEMA, **extra
            )
        except openai.BadRequestError:
            continue
        answers.append(done.choices[0].message.content)

    assert JSON_TEXT in answers


async def test_a_reply_in_a_format_from_claude_is_always_one_json_value(
    providers: Providers,
) -> None:
    """What a client of JSON mode obviously expects: the content parses as JSON. Claude may
    call a forced tool more than once unless ``disable_parallel_tool_use`` is set; either
    Whalli asks for one call or it answers with one of them."""
    calls = [
        ScriptedCall("toolu_1", "json_response", ['{"greeting": "Hi"}']),
        ScriptedCall("toolu_2", "json_response", ['{"greeting": "Yo"}']),
    ]
    providers.anthropic.script(Reply(chunks=anthropic_tool_stream(calls)))

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=_asked(), response_format=JSON_SCHEMA
    )

    sent = providers.anthropic.requests[-1].body
    asked_for_one = sent["tool_choice"].get("disable_parallel_tool_use") is True
    content = completion.choices[0].message.content or ""
    try:
        json.loads(content)
        one_value = True
    except ValueError:
        one_value = False
    assert asked_for_one or one_value, (sent["tool_choice"], content)


BAD_SCHEMA_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("strict_a_string", {"name": "g", "schema": SCHEMA, "strict": "yes"},
     "response_format.json_schema.strict"),
    ("description_a_number", {"name": "g", "schema": SCHEMA, "description": 5},
     "response_format.json_schema.description"),
    ("name_a_number", {"name": 5, "schema": SCHEMA}, "response_format.json_schema.name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("json_schema", "param"),
    [(b, p) for _, b, p in BAD_SCHEMA_FIELDS],
    ids=[n for n, _, _ in BAD_SCHEMA_FIELDS],
)
async def test_a_json_schema_field_of_the_wrong_type_is_refused_naming_it(
    providers: Providers, json_schema: dict[str, Any], param: str
) -> None:
    """The README: anything else (than the fields described) is refused naming the field."""
    response_format: Any = {"type": "json_schema", "json_schema": json_schema}

    with pytest.raises(openai.APIStatusError) as raised:
        await providers.sdk.chat.completions.create(
            model=GPT, messages=_asked(), response_format=response_format
        )

    body = raised.value.body
    assert isinstance(body, dict)
    assert raised.value.status_code == 400, body  # as OpenAI answers it (BadRequestError)
    assert body["param"] == param
    assert providers.openai.requests == []


async def test_a_format_refused_by_claude_as_invalid_is_not_answered_by_the_fallback(
    providers: Providers,
) -> None:
    """The README: a provider refusing the request itself as invalid (400) fails it instead of
    letting another model answer silently (here: a schema Claude cannot take), as the caller's
    400 with the provider's explanation (not a 502 an SDK would retry)."""
    providers.anthropic.script(
        Reply(status=400, body=anthropic_error("invalid_request_error", "schema is invalid"))
    )

    with pytest.raises(openai.APIStatusError) as raised:
        await providers.sdk.chat.completions.create(
            model=CLAUDE, messages=_asked(), response_format=JSON_SCHEMA
        )

    assert raised.value.status_code == 400
    assert "schema is invalid" in raised.value.message
    assert providers.openai.requests == []


async def test_a_streamed_json_reply_from_gpt_is_replayed_from_the_cache_the_same(
    providers: Providers,
) -> None:
    """The README: the format is part of the cache key; at temperature 0 a repeat is a hit,
    streamed like the original."""
    messages = _asked()

    async def streamed() -> tuple[str, list[str]]:
        chunks = await providers.sdk.chat.completions.create(
            model=GPT, messages=messages, response_format=JSON_SCHEMA, temperature=0,
            stream=True,
        )  # fmt: skip
        texts, reasons = [], []
        async for chunk in chunks:
            for choice in chunk.choices:
                texts.append(choice.delta.content or "")
                if choice.finish_reason:
                    reasons.append(choice.finish_reason)
        return "".join(texts), reasons

    first, second = await streamed(), await streamed()

    assert first == second == (JSON_TEXT, ["stop"])
    assert len(providers.openai.requests) == 1
