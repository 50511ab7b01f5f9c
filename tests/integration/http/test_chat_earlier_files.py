"""Attached files in a chat's context (the real app, Postgres, Redis and S3, the provider on
loopback): files of earlier messages stay in it (a follow-up question and a regeneration
still send them), and an image goes as an image to a model that reads images."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_files import PNG, form, multipart
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


async def uploaded_image(chat: Chat, pool: PostgresPool, user: dict[str, Any]) -> str:
    """A PNG uploaded through the API (stored in S3), its OCR text then extracted; its id."""
    response = await chat.client.post(
        "/api/files/upload", content=form(PNG, "cat.png"), headers={**user["auth"], **multipart()}
    )
    assert response.status_code == 201, response.text
    assert response.json()["contentType"] == "image/png"
    attachment_id = uuid.UUID(response.json()["id"])
    now = datetime.now(UTC)
    async with PostgresUnitOfWork(pool) as uow:
        stored = await uow.attachments.get_for_update(attachment_id)
        stored.start_processing(now)
        stored.complete(ExtractionResult(text="OCR: a cat", method="ocr"), now)
        await uow.attachments.update(stored)
        await uow.commit()
    return str(attachment_id)


async def test_an_attached_image_reaches_a_model_that_reads_images_as_the_image_itself(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    cat = await uploaded_image(chat, pg_pool, alice)
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"What is it? {uuid.uuid4()}", attachmentIds=[cat]
    )
    assert (await chat.events(first["sessionId"]))[-1][1] == "done"
    content = chat.provider.requests[-1].body["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["text", "image_url", "text"]
    assert content[0]["text"] == "Attached image: cat.png"
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.partition(",")[2]) == PNG  # the bytes uploaded, from S3
    assert content[2]["text"].startswith("What is it?")
    assert "OCR: a cat" not in str(content)

    # a follow-up sends it again, as an image
    follow_up = await chat.start(
        alice["auth"], model=MODEL, message="And its colour?", chatId=first["chatId"]
    )
    await chat.events(follow_up["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0]["content"][1]["image_url"]["url"] == url
    assert sent[-1] == {"role": "user", "content": "And its colour?"}


async def test_a_model_that_does_not_read_images_gets_the_images_text(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    cat = await uploaded_image(chat, pg_pool, alice)
    started = await chat.start(
        alice["auth"], model="dev/echo", message="Describe", attachmentIds=[cat]
    )
    events = await chat.events(started["sessionId"])
    echoed = "".join(data["delta"] for _, name, data in events if name == "token")
    assert "OCR: a cat" in echoed
