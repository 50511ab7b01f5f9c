"""The chat app on real services with an OpenAI-compatible fake provider on loopback, for the
chat route tests (a module may define its own ``chat`` instead), and helpers they share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.integration.http.test_chat_flow import Chat, _app
from tests.support.fake_providers import FakeProviderServer, openai_default
from tests.support.oauth_server import FakeOAuthServer
from whalli.adapters.embedded.stack import StackUrls


@asynccontextmanager
async def chat_app(stack_urls: StackUrls, unique: str, **env: str) -> AsyncIterator[Chat]:
    """The app (with ``env`` added to its settings) and its fake provider."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider, **env) as chat,
    ):
        yield chat


@pytest.fixture
def oauth_server() -> Iterator[FakeOAuthServer]:
    """The loopback OAuth server playing GitHub and Google."""
    server = FakeOAuthServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with chat_app(stack_urls, unique) as chat:
        yield chat


async def team_project(chat: Chat, owner: dict[str, Any], member: dict[str, Any], role: str) -> str:
    """A project of ``owner`` shared with ``member`` in ``role``; its id."""
    created = await chat.client.post("/api/projects", json={"name": "Team"}, headers=owner["auth"])
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": member["email"], "role": role}, headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text
    return project_id


@pytest.fixture
async def patient(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Any]:
    """A chat app (``RaceChat``) whose provider idle timeout is far longer than a test waits:
    only Whalli closes a held call."""
    from tests.integration.http.test_chat_races import _race_app  # (it imports this module)

    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(
            stack_urls, unique, provider, WHALLI_CHAT_TITLES="off",
            WHALLI_PROVIDER_IDLE_TIMEOUT_S="300",
        ) as chat,
    ):  # fmt: skip
        yield chat
