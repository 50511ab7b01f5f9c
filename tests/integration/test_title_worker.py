"""Automatic chat titles end to end: the app on real Postgres and Redis starts a chat over HTTP,
its reply completes, the production worker (``whalli worker``, its own process, same queue) runs
the ``TitleChat`` job against a fake OpenAI provider on loopback, and the chat shows the model's
title; a chat renamed while the model answers keeps its name. Waits are bounded; nothing
asserts how long anything took."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.test_extraction_worker import Worker, eventually
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    openai_default,
    openai_stream,
)
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chat_titles import INSTRUCTION
from whalli.domain.model.chats import title_from

MODEL_TITLE = ('"Sourdough', " Starter", ' Basics."')  # the model's answer, as streamed
TITLE = "Sourdough Starter Basics"  # as set, cleaned


class TitlingProvider:
    """OpenAI's default answers, except a title request, which gets ``MODEL_TITLE`` (held
    after its first piece until ``gate`` is set, when there is one)."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self._default = openai_default()

    def __call__(self, request: RecordedRequest) -> Reply:
        if not is_title_request(request):
            return self._default(request)
        pieces = openai_stream(MODEL_TITLE, usage=(60, 5))
        return Reply(chunks=pieces, gate=self.gate, gate_after=1)


def is_title_request(request: RecordedRequest) -> bool:
    messages = request.body.get("messages") or [{}]
    return bool(messages[0].get("content") == INSTRUCTION)


class Stack:
    def __init__(self, chat: Chat, provider: FakeProviderServer, titling: TitlingProvider) -> None:
        self.chat, self.provider, self.titling = chat, provider, titling

    def title_requests(self) -> list[RecordedRequest]:
        return [r for r in self.provider.requests if is_title_request(r)]

    async def requests_counted(self, user_id: str) -> int:
        """How many model calls the user's usage records count (replies and titles)."""
        uow = await resolved(self.chat.world.container.adapters.unit_of_work())
        async with uow:
            since = (await uow.users.get(uuid.UUID(user_id))).created_at
            totals = await uow.usage.totals(uuid.UUID(user_id), since=since)
        return totals.requests


@pytest.fixture
def queue_name(unique: str) -> str:
    return f"titles-test-{unique}"


@pytest.fixture
async def stack(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, queue_name: str
) -> AsyncIterator[Stack]:
    titling = TitlingProvider()
    async with (
        FakeProviderServer(titling) as provider,
        _app(stack_urls, unique, provider, WHALLI_QUEUE_NAME=queue_name) as chat,
    ):
        yield Stack(chat, provider, titling)
    async with Redis.from_url(stack_urls.redis_url) as client:
        async for key in client.scan_iter(match=f"{queue_name}:*"):
            await client.delete(key)


def worker_env(
    stack_urls: StackUrls, *, queue_name: str, bucket: str, provider_url: str, tmp_path: Path
) -> dict[str, str]:
    """The environment of a ``whalli worker`` on ``queue_name`` that titles with the fake
    OpenAI provider at ``provider_url`` (and retries jobs within milliseconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHALLI_")}
    env.update(
        WHALLI_DATABASE_URL=stack_urls.database_url,
        WHALLI_REDIS_URL=stack_urls.redis_url,
        WHALLI_S3_ENDPOINT=stack_urls.s3_endpoint,
        WHALLI_S3_ACCESS_KEY=stack_urls.s3_access_key,
        WHALLI_S3_SECRET_KEY=stack_urls.s3_secret_key,
        WHALLI_S3_BUCKET=bucket,
        WHALLI_QUEUE_NAME=queue_name,
        WHALLI_WORKER_THREADS="2",
        WHALLI_JOB_MIN_BACKOFF_MS="10",
        WHALLI_JOB_MAX_BACKOFF_MS="50",
        WHALLI_OPENAI_API_KEY=API_KEY,
        WHALLI_OPENAI_BASE_URL=provider_url,
        # the sweepers would pick up other tests' rows in the shared database
        WHALLI_EXTRACTION_SWEEP_INTERVAL_S="0",
        WHALLI_REPLY_SWEEP_INTERVAL_S="0",
        WHALLI_LOG_DIR=str(tmp_path / "logs"),
        WHALLI_LOG_JSON="false",
        WHALLI_DATA_DIR=str(tmp_path / "data"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    (tmp_path / "metrics").mkdir()
    return env


@pytest.fixture
def worker(
    stack: Stack, stack_urls: StackUrls, queue_name: str, unique: str, tmp_path: Path
) -> Iterator[Worker]:
    env = worker_env(
        stack_urls, queue_name=queue_name, bucket=f"titles-{unique}",
        provider_url=stack.provider.url, tmp_path=tmp_path,
    )  # fmt: skip
    started = Worker(env, tmp_path, tmp_path / "worker.log")
    yield started
    started.close()


async def _new_chat(stack: Stack, auth: dict[str, str], message: str) -> str:
    started = await stack.chat.start(auth, model="openai/gpt-4o-mini", message=message)
    events = await stack.chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    chat_id: str = started["chatId"]
    return chat_id


async def test_a_new_chats_title_is_written_by_the_model_in_the_worker(
    stack: Stack, worker: Worker
) -> None:
    alice = await stack.chat.world.register("alice")
    message = f"How do I keep a sourdough starter alive? {uuid.uuid4()}"
    chat_id = await _new_chat(stack, alice["auth"], message)
    url = f"/api/chats/{chat_id}"

    async def retitled() -> dict[str, Any] | None:
        shown: dict[str, Any] = (await stack.chat.client.get(url, headers=alice["auth"])).json()
        return shown if shown["title"] != title_from(message) else None

    shown = await eventually(retitled, worker)

    assert shown["title"] == TITLE
    listed = (await stack.chat.client.get("/api/chats", headers=alice["auth"])).json()["items"]
    assert [c["title"] for c in listed if c["id"] == chat_id] == [TITLE]
    [sent] = stack.title_requests()
    assert sent.body["model"] == "gpt-4o-mini"  # the model that wrote the first reply
    assert sent.body["temperature"] <= 0.3
    assert message in sent.body["messages"][1]["content"]
    assert "Hello, world!" in sent.body["messages"][1]["content"]  # the first reply
    # the reply and the title, each a usage record of the chat's owner
    assert await eventually(lambda: _counted(stack, alice, 2), worker)


async def _counted(stack: Stack, user: dict[str, Any], expected: int) -> bool:
    return await stack.requests_counted(user["user"]["id"]) == expected


async def test_a_chat_renamed_while_the_model_answers_keeps_its_name(
    stack: Stack, worker: Worker
) -> None:
    stack.titling.gate = asyncio.Event()
    bob = await stack.chat.world.register("bob")
    message = f"What flour is best for bread? {uuid.uuid4()}"
    chat_id = await _new_chat(stack, bob["auth"], message)
    url = f"/api/chats/{chat_id}"

    async def asked() -> bool:  # the job read the chat and is waiting for the model's answer
        return bool(stack.title_requests())

    await eventually(asked, worker)
    renamed = await stack.chat.client.patch(
        url, json={"title": "My flour notes"}, headers=bob["auth"]
    )
    assert renamed.status_code == 200, renamed.text
    stack.titling.gate.set()
    # the job ended: its call is counted next to the reply's
    await eventually(lambda: _counted(stack, bob, 2), worker)

    shown = (await stack.chat.client.get(url, headers=bob["auth"])).json()
    assert shown["title"] == "My flour notes"
    assert len(stack.title_requests()) == 1
