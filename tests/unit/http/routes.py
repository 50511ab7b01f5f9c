"""Route handlers that exist only in tests, mounted with create_app(extra_route_handlers=...)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import Stream

from whalli.domain.model.errors import (
    AttachmentTooLarge,
    ChatNotFound,
    MigrationError,
    RateLimited,
    ServiceUnavailable,
)
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import PUBLIC

log = structlog.get_logger("tests.http")

LEAKY_MESSAGE = "boom at postgres://whalli:hunter2@db.internal/whalli in /srv/secret_module.py"


class NoteCreate(Inbound):
    title: str
    word_count: int


class Note(Schema):
    title: str
    word_count: int
    tag: str | None = None


class ProbeController(Controller):
    path = "/api/test"
    opt = PUBLIC  # these routes test the plumbing, not authentication

    @get("/items/{item_id:int}")
    async def item(self, item_id: FromPath[int]) -> Note:
        if item_id == 404:
            raise ChatNotFound(chat_id="c-1")
        if item_id == 413:
            raise AttachmentTooLarge(max_size_bytes=1024)
        if item_id == 429:
            raise RateLimited(retry_after=30)
        if item_id == 503:
            raise ServiceUnavailable("redis is down")
        if item_id == 500:
            raise MigrationError()
        return Note(title=f"item {item_id}", word_count=item_id)

    @post("/notes")
    async def create(self, data: JSONBody[NoteCreate]) -> Note:
        return Note(title=data.title, word_count=data.word_count)

    @get("/stream")
    async def stream(self) -> Stream:
        async def events() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()

        return Stream(events(), media_type="text/event-stream")

    @get("/boom")
    async def boom(self) -> None:
        raise RuntimeError(LEAKY_MESSAGE)

    @get("/log")
    async def log_something(self) -> None:
        log.info(
            "connecting",
            url="postgres://whalli:hunter2@db.internal:5432/whalli",
            password="hunter2",
            api_key="sk-live-123",
            headers={"Authorization": "Bearer abc", "accept": "text/html"},
            max_tokens=512,
        )
