"""The chat app on real services with an OpenAI-compatible fake provider on loopback, for the
chat route tests (a module may define its own ``chat`` instead)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.http.test_chat_flow import Chat, _app
from tests.support.fake_providers import FakeProviderServer, openai_default
from whalli.adapters.embedded.stack import StackUrls


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider) as chat,
    ):
        yield chat
