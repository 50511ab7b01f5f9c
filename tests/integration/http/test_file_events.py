"""A file's status as Server-Sent Events, through the real app, container, Postgres, Redis and
S3; the extraction runs in-process through the container's own handler (no worker), while the
feed polls."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.integration.http.test_files import TEXT, Files, _files, form
from tests.support.documents import text_pdf
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import ExtractAttachment

FAST_POLL = {"WHALLI_FILE_EVENTS_POLL_S": "0.05"}


class Feed:
    """One open feed, read event by event (a comment is an event named ``:``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> tuple[str, Any] | None:
        """The next event as ``(name, data)``, or None when the server closed the stream."""
        name, data, comment = "message", [], None
        async for line in self._lines:
            if line == "":
                if comment is not None:
                    return ":", comment
                if data:
                    return name, json.loads("\n".join(data))
                continue
            field, _, value = line.partition(": ")
            if field == "":
                comment = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
        return None

    async def rest(self) -> list[tuple[str, Any]]:
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events


@asynccontextmanager
async def feed(files: Files, file_id: str, auth: dict[str, str]) -> AsyncIterator[Feed]:
    async with files.client.stream("GET", f"/api/files/{file_id}/events", headers=auth) as r:
        yield Feed(r)


@pytest.fixture
async def files(stack_urls: StackUrls, migrated_database_url: str, unique: str) -> Any:
    async with _files(stack_urls, unique, **FAST_POLL) as found:
        yield found


async def extract(files: Files, file_id: str) -> None:
    handler = await resolved(files.container.services.extract_attachment())
    await handler.execute(ExtractAttachment(attachment_id=uuid.UUID(file_id)))


async def detail(files: Files, file_id: str, auth: dict[str, str]) -> Any:
    response = await files.client.get(f"/api/files/{file_id}", headers=auth)
    assert response.status_code == 200
    return response.json()


async def test_a_pending_file_streams_its_status_then_done_with_its_text_and_ends(
    files: Files,
) -> None:
    alice = await files.user("alice")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()
    async with feed(files, uploaded["id"], alice["auth"]) as events:
        assert events.response.status_code == 200
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert events.response.headers["cache-control"] == "no-cache"
        assert events.response.headers["x-accel-buffering"] == "no"
        first = await events.next()
        assert first == ("status", await detail(files, uploaded["id"], alice["auth"]))
        assert first[1]["status"] == "pending"
        await extract(files, uploaded["id"])
        rest = await events.rest()
    done = await detail(files, uploaded["id"], alice["auth"])
    assert done["status"] == "done"
    assert done["textPreview"].startswith("Quarterly notes: revenue is up")
    assert rest[-1] == ("status", done)
    assert {(name, data["status"]) for name, data in rest[:-1]} <= {("status", "processing")}


async def test_a_failed_extraction_ends_the_stream_with_failed_and_its_reason(
    files: Files,
) -> None:
    alice = await files.user("alice")
    whole = text_pdf("Some text", "More text")
    uploaded = await files.upload(alice["auth"], form(whole[: len(whole) // 2], "cut.pdf"))
    file_id = uploaded.json()["id"]
    async with feed(files, file_id, alice["auth"]) as events:
        first = await events.next()
        assert first is not None
        assert first[1]["status"] == "pending"
        await extract(files, file_id)
        rest = await events.rest()
    name, last = rest[-1]
    assert (name, last["status"]) == ("status", "failed")
    assert last["failureReason"] == "the PDF is damaged or incomplete"
    assert last == await detail(files, file_id, alice["auth"])


async def test_another_users_file_and_a_missing_one_are_a_404_problem_before_any_stream(
    files: Files,
) -> None:
    alice, bob = await files.user("alice"), await files.user("bob")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "secret.txt"))).json()
    for file_id in (uploaded["id"], str(uuid.uuid4())):
        response = await files.client.get(f"/api/files/{file_id}/events", headers=bob["auth"])
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "attachment_not_found"


async def test_without_a_credential_the_feed_is_a_401_problem(files: Files) -> None:
    alice = await files.user("alice")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()
    response = await files.client.get(f"/api/files/{uploaded['id']}/events")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_file_deleted_while_watched_ends_the_stream_with_deleted(files: Files) -> None:
    alice = await files.user("alice")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()
    async with feed(files, uploaded["id"], alice["auth"]) as events:
        assert await events.next() is not None
        deleted = await files.client.delete(f"/api/files/{uploaded['id']}", headers=alice["auth"])
        assert deleted.status_code == 204
        assert await events.rest() == [("deleted", {"id": uploaded["id"]})]


async def test_the_lifetime_limit_ends_the_stream_with_timeout(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _files(
        stack_urls, unique, WHALLI_FILE_EVENTS_MAX_LIFETIME_S="0.01", **FAST_POLL
    ) as files:
        alice = await files.user("alice")
        uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()
        async with feed(files, uploaded["id"], alice["auth"]) as events:
            events_seen = await events.rest()
    assert [name for name, _ in events_seen] == ["status", "timeout"]
    assert events_seen[0][1]["status"] == "pending"
    assert events_seen[1] == ("timeout", {"id": uploaded["id"]})


async def test_an_idle_feed_sends_heartbeat_comments(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _files(stack_urls, unique, WHALLI_CHAT_HEARTBEAT_S="0.01", **FAST_POLL) as files:
        alice = await files.user("alice")
        uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()
        async with feed(files, uploaded["id"], alice["auth"]) as events:
            assert (await events.next() or ("", {}))[0] == "status"
            assert await events.next() == (":", "ping")
            await extract(files, uploaded["id"])
            rest = [event for event in await events.rest() if event[0] != ":"]
        assert rest[-1][1]["status"] == "done"


def _open_streams(metrics: str) -> float:
    (line,) = [x for x in metrics.splitlines() if x.startswith("whalli_sse_connections_active")]
    return float(line.rsplit(" ", 1)[1])


async def test_a_client_leaving_stops_the_feed(files: Files) -> None:
    alice = await files.user("alice")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()

    async def open_streams() -> float:
        return _open_streams((await files.client.get("/api/metrics")).text)

    before = await open_streams()
    async with feed(files, uploaded["id"], alice["auth"]) as events:
        assert await events.next() is not None
        assert await open_streams() == before + 1
    for _ in range(6000):  # the server notices on its own: only a hang fails
        if await open_streams() == before:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the feed was never closed")
