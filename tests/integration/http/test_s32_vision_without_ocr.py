"""An attached image without its OCR text (the real app, Postgres, Redis and S3, the provider on
loopback; no extraction worker runs): a model that reads images is sent the image itself, its
OCR failed or not done yet, and the start does not wait; a model that does not still gets the
409, as does an image OCR found damaged or of a type the provider does not take."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_files import form, multipart
from tests.support.documents import image_bytes, text_image
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.attachments import OCR_IMAGE_TOO_LARGE, Attachment
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

VISION = "openai/gpt-4o-mini"
BLIND = "dev/echo"
PHOTO = image_bytes(text_image("A huge photo"), "PNG")
TOO_LARGE = f"{OCR_IMAGE_TOO_LARGE} (Image size (200000000 pixels) exceeds limit)"


async def uploaded(chat: Chat, user: dict[str, Any], name: str) -> uuid.UUID:
    response = await chat.client.post(
        "/api/files/upload", content=form(PHOTO, name), headers={**user["auth"], **multipart()}
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return uuid.UUID(response.json()["id"])


async def ocr_ends(pool: PostgresPool, attachment_id: uuid.UUID, failed: str | None) -> None:
    """The file's extraction started and, with ``failed``, failed so (as the worker records)."""
    now = datetime.now(UTC)
    async with PostgresUnitOfWork(pool) as uow:
        stored = await uow.attachments.get_for_update(attachment_id)
        stored.start_processing(now)
        if failed is not None:
            stored.fail(failed, now)
        await uow.attachments.update(stored)
        await uow.commit()


async def start(chat: Chat, user: dict[str, Any], model: str, *files: uuid.UUID) -> Any:
    return await chat.client.post(
        "/api/chat/start",
        json={"model": model, "message": f"What is it? {uuid.uuid4()}",
              "attachmentIds": [str(f) for f in files]},
        headers=user["auth"],
    )  # fmt: skip


def image_sent(chat: Chat) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = chat.provider.requests[-1].body["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["text", "image_url", "text"], content
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.partition(",")[2]) == PHOTO  # the bytes uploaded, from S3
    return content


async def test_a_model_that_reads_images_is_sent_an_image_whose_ocr_failed(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    photo = await uploaded(chat, alice, "photo.png")
    await ocr_ends(pg_pool, photo, TOO_LARGE)

    response = await start(chat, alice, VISION, photo)

    assert response.status_code == 201, response.text
    assert (await chat.events(response.json()["sessionId"]))[-1][1] == "done"
    content = image_sent(chat)
    assert content[0]["text"] == "Attached image: photo.png"
    assert content[2]["text"].startswith("What is it?")
    # a follow-up sends it again, as an image
    follow_up = await chat.client.post(
        "/api/chat/start",
        json={"model": VISION, "message": "And its colour?", "chatId": response.json()["chatId"]},
        headers=alice["auth"],
    )
    assert follow_up.status_code == 201, follow_up.text
    await chat.events(follow_up.json()["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0]["content"][1] == content[1]


async def test_a_model_that_does_not_read_images_still_gets_409_for_it(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    photo = await uploaded(chat, alice, "photo.png")
    await ocr_ends(pg_pool, photo, TOO_LARGE)
    calls = len(chat.provider.requests)

    response = await start(chat, alice, BLIND, photo)

    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["code"], body["filename"]) == ("attachment_not_ready", "photo.png")
    assert TOO_LARGE in body["detail"]
    assert len(chat.provider.requests) == calls
    assert (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"] == []


async def test_an_image_still_being_read_does_not_hold_a_start_for_a_model_that_reads_images(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    photo = await uploaded(chat, alice, "scan.png")
    await ocr_ends(pg_pool, photo, None)  # processing, and no worker will ever finish it

    response = await start(chat, alice, VISION, photo)

    assert response.status_code == 201, response.text
    assert (await chat.events(response.json()["sessionId"]))[-1][1] == "done"
    assert image_sent(chat)[0]["text"] == "Attached image: scan.png"


async def test_an_image_ocr_found_damaged_is_still_refused_to_a_model_that_reads_images(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    photo = await uploaded(chat, alice, "cut.png")
    await ocr_ends(pg_pool, photo, "the image is damaged or incomplete")
    calls = len(chat.provider.requests)

    response = await start(chat, alice, VISION, photo)

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "attachment_not_ready"
    assert "damaged" in body["detail"]
    assert "cannot be sent as an image" in body["detail"]
    assert len(chat.provider.requests) == calls


async def test_an_image_of_a_type_the_provider_does_not_take_is_refused_without_its_text(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    user_id = uuid.UUID(alice["user"]["id"])
    project_id, attachment_id = personal_project_id(user_id), uuid.uuid4()
    now = datetime.now(UTC)
    fax = Attachment(
        id=attachment_id, project_id=project_id, user_id=user_id,
        object_key=Attachment.key_for(project_id, attachment_id), filename="fax.tiff",
        content_type="image/tiff", size_bytes=1000, sha256="0" * 64,
        created_at=now, updated_at=now,
    )  # fmt: skip
    fax.start_processing(now)
    fax.fail(TOO_LARGE, now)
    async with PostgresUnitOfWork(pg_pool) as uow:
        await uow.attachments.add(fax)
        await uow.commit()
    calls = len(chat.provider.requests)

    response = await start(chat, alice, VISION, attachment_id)

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "attachment_not_ready"
    assert "image/tiff" in body["detail"], body
    assert len(chat.provider.requests) == calls
