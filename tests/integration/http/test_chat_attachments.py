"""Starting a chat with a file through the real app and container (served on loopback, so the
test can change the file meanwhile): the start waits a little for the file's extraction, then
answers 409 naming it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.container import Container, build_container
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.entrypoints.http.asgi import build_app


class Files(World):
    """The app's world, with rows written through the test's own pool (the app's pool lives on
    the server's event loop)."""

    def __init__(self, client: httpx.AsyncClient, container: Container, pool: PostgresPool):
        super().__init__(client, container)  # type: ignore[arg-type]
        self.pool = pool


@pytest.fixture
async def world(stack_urls: StackUrls, pg_pool: PostgresPool, unique: str) -> AsyncIterator[Files]:
    settings = _settings(stack_urls, unique, WHALLI_CHAT_ATTACHMENT_WAIT_S="2")
    container = build_container(settings)
    async with live_server(build_app(settings, container)) as client:
        yield Files(client, container, pg_pool)


async def pending_file(world: Files, user: dict[str, Any], filename: str) -> Attachment:
    user_id = uuid.UUID(user["user"]["id"])
    project_id, attachment_id = personal_project_id(user_id), uuid.uuid4()
    now = datetime.now(UTC)
    attachment = Attachment(
        id=attachment_id, project_id=project_id, user_id=user_id,
        object_key=Attachment.key_for(project_id, attachment_id), filename=filename,
        content_type="application/pdf", size_bytes=10, sha256="0" * 64,
        created_at=now, updated_at=now,
    )  # fmt: skip
    async with PostgresUnitOfWork(world.pool) as uow:
        await uow.attachments.add(attachment)
        await uow.commit()
    return attachment


async def extract(world: Files, attachment: Attachment) -> None:
    now = datetime.now(UTC)
    async with PostgresUnitOfWork(world.pool) as uow:
        stored = await uow.attachments.get_for_update(attachment.id)
        stored.start_processing(now)
        stored.complete(ExtractionResult(text="Budget 2026", method="text"), now)
        await uow.attachments.update(stored)
        await uow.commit()


async def start(world: Files, user: dict[str, Any], attachment: Attachment) -> Any:
    return await world.client.post(
        "/api/chat/start",
        json={"model": "dev/echo", "message": "Summarise", "attachmentIds": [str(attachment.id)]},
        headers=user["auth"],
    )


async def test_a_file_extracted_during_the_wait_lets_the_chat_start(world: Files) -> None:
    alice = await world.register("alice")
    attachment = await pending_file(world, alice, "budget.pdf")

    async def extracted_meanwhile() -> None:
        await asyncio.sleep(0.2)
        await extract(world, attachment)

    response, _ = await asyncio.gather(start(world, alice, attachment), extracted_meanwhile())

    assert response.status_code == 201, response.text


async def test_a_file_still_pending_after_the_wait_is_a_409_naming_it(world: Files) -> None:
    alice = await world.register("alice")
    attachment = await pending_file(world, alice, "slow-scan.pdf")

    response = await start(world, alice, attachment)

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "attachment_not_ready"
    assert "slow-scan.pdf" in body["detail"]
    assert body["filename"] == "slow-scan.pdf"
