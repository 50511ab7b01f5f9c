"""Files attached to earlier messages stay in a chat's context (the real app, Postgres and
Redis, the provider on loopback): a follow-up question, and a regeneration, still send them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

MODEL = "openai/gpt-4o-mini"


async def extracted_file(pool: PostgresPool, user: dict[str, Any], name: str, text: str) -> str:
    """A file of ``user``'s personal project whose text is extracted; its id."""
    user_id = uuid.UUID(user["user"]["id"])
    project_id, attachment_id = personal_project_id(user_id), uuid.uuid4()
    now = datetime.now(UTC)
    attachment = Attachment(
        id=attachment_id, project_id=project_id, user_id=user_id,
        object_key=Attachment.key_for(project_id, attachment_id), filename=name,
        content_type="application/pdf", size_bytes=10, sha256="0" * 64,
        created_at=now, updated_at=now,
    )  # fmt: skip
    attachment.start_processing(now)
    attachment.complete(ExtractionResult(text=text, method="text"), now)
    async with PostgresUnitOfWork(pool) as uow:
        await uow.attachments.add(attachment)
        await uow.commit()
    return str(attachment_id)


async def test_a_follow_up_question_still_sends_the_file_attached_before(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    budget = await extracted_file(pg_pool, alice, "budget.pdf", "Total: 42 units")
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"Summarise {uuid.uuid4()}", attachmentIds=[budget]
    )
    await chat.events(first["sessionId"])
    with_file = chat.provider.requests[-1].body["messages"][-1]["content"]
    assert with_file.startswith("Attached file: budget.pdf\nTotal: 42 units\n\nSummarise")

    follow_up = await chat.start(
        alice["auth"], model=MODEL, message="And the total?", chatId=first["chatId"]
    )
    await chat.events(follow_up["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == with_file  # as it was sent the first time
    assert sent[-1] == {"role": "user", "content": "And the total?"}

    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": first["chatId"]}, headers=alice["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    await chat.events(regenerated.json()["sessionId"])
    assert chat.provider.requests[-1].body["messages"][0]["content"] == with_file


async def test_a_file_deleted_since_leaves_the_context(chat: Chat, pg_pool: PostgresPool) -> None:
    alice = await chat.world.register("alice")
    notes = await extracted_file(pg_pool, alice, "notes.txt", "the secret plan")
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"Read {uuid.uuid4()}", attachmentIds=[notes]
    )
    await chat.events(first["sessionId"])
    deleted = await chat.client.delete(f"/api/files/{notes}", headers=alice["auth"])
    assert deleted.status_code == 204, deleted.text

    again = await chat.start(alice["auth"], model=MODEL, message="More?", chatId=first["chatId"])
    await chat.events(again["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0]["content"].startswith("Read ")
    assert all("secret plan" not in m["content"] for m in sent)
