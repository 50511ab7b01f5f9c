"""Hunt S32: files attached to chat messages, across the chat features (the real app,
Postgres, Redis and S3; the provider on loopback records what reached the model): a start
naming a file that is gone or in another project, the Markdown export of a chat with files,
and what a fork into another project and a shared link let out of a project's files."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_earlier_files import extracted_file
from tests.integration.http.test_chat_flow import Chat
from whalli.adapters.postgres.pool import PostgresPool

MODEL = "openai/gpt-4o-mini"
PROBLEM = "application/problem+json"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    return body


async def _start(chat: Chat, auth: dict[str, str], **body: Any) -> Any:
    return await chat.client.post("/api/chat/start", json=body, headers=auth)


# === a start naming a file it cannot attach =====================================================
async def test_a_start_naming_a_deleted_file_among_others_says_which_one_is_gone(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    kept = await extracted_file(pg_pool, alice, "kept.pdf", "still here")
    gone = await extracted_file(pg_pool, alice, "gone.pdf", "deleted since")
    deleted = await chat.client.delete(f"/api/files/{gone}", headers=alice["auth"])
    assert deleted.status_code == 204, deleted.text

    refused = await _start(
        chat, alice["auth"], model=MODEL, message="Compare", attachmentIds=[kept, gone]
    )

    body = _problem(refused, 404)
    assert body["code"] == "attachment_not_found"
    assert body["attachmentId"] == gone  # the client is told which of its files to drop
    assert (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"] == []


async def test_the_callers_own_file_of_another_project_is_named_as_elsewhere_not_missing(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    team = await team_project(chat, alice, bob, "editor")
    notes = await extracted_file(pg_pool, alice, "notes.pdf", "personal notes")  # personal

    refused = await _start(
        chat, alice["auth"], model=MODEL, message="Read", projectId=team, attachmentIds=[notes]
    )

    # the file is in Alice's file list: "File not found." sent her looking for a deleted file
    body = _problem(refused, 422)
    assert body["code"] == "invalid_input"
    assert body["field"] == "attachmentIds"
    assert body["attachmentId"] == notes
    assert "notes.pdf" in body["detail"]
    assert "another project" in body["detail"]
    assert (await chat.client.get(f"/api/chats?projectId={team}", headers=bob["auth"])).json()[
        "items"
    ] == []


async def test_someone_elses_file_stays_a_404_exactly_as_a_file_that_never_existed(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice, mallory = await chat.world.register("alice"), await chat.world.register("mallory")
    secret = await extracted_file(pg_pool, alice, "secret.pdf", "the plan")
    missing = str(uuid.uuid4())

    answers = []
    for file_id in (secret, missing):
        refused = await _start(
            chat, mallory["auth"], model=MODEL, message="Hi", attachmentIds=[file_id]
        )
        answers.append(_problem(refused, 404))

    for body, file_id in zip(answers, (secret, missing), strict=True):
        assert body["attachmentId"] == file_id
    same = [{k: v for k, v in b.items() if k not in ("attachmentId", "detail", "requestId")}
            for b in answers]  # fmt: skip
    assert same[0] == same[1]
    assert answers[0]["detail"].replace(secret, missing) == answers[1]["detail"]
    assert "secret.pdf" not in str(answers[0])


# === the Markdown export ========================================================================
async def test_a_markdown_export_names_the_attached_files_but_not_one_deleted_since(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    budget = await extracted_file(pg_pool, alice, "budget_*2026*.pdf", "Total: 42")
    leaked = await extracted_file(pg_pool, alice, "layoffs-plan.pdf", "names")
    started = await chat.start(
        alice["auth"], model=MODEL, message="Read both", attachmentIds=[budget, leaked]
    )
    await chat.events(started["sessionId"])
    deleted = await chat.client.delete(f"/api/files/{leaked}", headers=alice["auth"])
    assert deleted.status_code == 204, deleted.text

    exported = await chat.client.get(
        f"/api/chats/{started['chatId']}/export", headers=alice["auth"]
    )

    assert exported.status_code == 200, exported.text
    text = exported.text
    assert "budget\\_\\*2026\\*.pdf" in text  # named, its Markdown characters escaped
    assert "layoffs-plan" not in text  # a deleted file's name is not kept anywhere
    assert "1 file deleted since" in text


# === what leaves a project with a fork or a link ================================================
async def test_a_readers_fork_elsewhere_and_a_shared_link_carry_no_file_of_the_project(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    team = await team_project(chat, alice, bob, "viewer")
    marker = uuid.uuid4().hex
    secret = await extracted_file(pg_pool, alice, "secret.pdf", f"launch code {marker}")
    # the file moves into the team project as its own (extracted_file puts it in Alice's)
    async with pg_pool.connection() as connection:
        await connection.execute(
            "UPDATE attachments SET project_id = %s WHERE id = %s", (team, secret)
        )
    started = await chat.start(
        alice["auth"], model=MODEL, message="Read it", projectId=team, attachmentIds=[secret]
    )
    await chat.events(started["sessionId"])
    assert marker in str(chat.provider.requests[-1].body["messages"])

    forked = await chat.client.post(
        f"/api/chats/{started['chatId']}/fork", json={}, headers=bob["auth"]
    )
    assert forked.status_code == 201, forked.text
    assert [m["attachmentIds"] for m in forked.json()["messages"]] == [[], []]
    asked = len(chat.provider.requests)
    again = await chat.start(
        bob["auth"], model=MODEL, message="What was in it?", chatId=forked.json()["id"]
    )
    await chat.events(again["sessionId"])
    assert len(chat.provider.requests) == asked + 1
    assert marker not in str(chat.provider.requests[-1].body["messages"])
    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": forked.json()["id"]}, headers=bob["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    await chat.events(regenerated.json()["sessionId"])
    assert marker not in str(chat.provider.requests[-1].body["messages"])

    shared = await chat.client.post(
        f"/api/chats/{started['chatId']}/shares", json={}, headers=alice["auth"]
    )
    assert shared.status_code == 201, shared.text
    public = await chat.client.get(shared.json()["url"])
    assert public.status_code == 200, public.text
    for leak in (secret, "secret.pdf", marker, "attachment"):
        assert leak not in public.text.lower()
