"""The official ``openai`` SDK against the real app and container (Postgres, Redis), with a fake
OpenAI provider on loopback behind Whalli: SDK → /v1 → Whalli's OpenAI adapter → fake provider."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import openai
import pytest

from tests.integration.http.test_identity_end_to_end import PASSWORD, _settings
from tests.support.fake_providers import API_KEY, FakeProviderServer, openai_default
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.entrypoints.http.asgi import build_app


@dataclass
class World:
    container: Container
    provider: FakeProviderServer
    sdk: openai.AsyncOpenAI
    user_id: uuid.UUID


async def _api_key(client: httpx.AsyncClient) -> tuple[str, uuid.UUID]:
    email = f"sdk-{uuid.uuid4().hex[:10]}@example.com"
    registered = await client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Sdk"}
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    auth = {"Authorization": f"Bearer {body['tokens']['accessToken']}"}
    created = await client.post("/api/keys", json={"name": "sdk"}, headers=auth)
    assert created.status_code == 201, created.text
    return created.json()["secret"], uuid.UUID(body["user"]["id"])


@pytest.fixture
async def world(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[World]:
    async with FakeProviderServer(openai_default()) as provider:
        settings = _settings(
            stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url
        )
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            secret, user_id = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
            async with sdk:
                yield World(container, provider, sdk, user_id)


async def test_the_sdk_completes_through_the_real_provider_adapter(world: World) -> None:
    prompt = f"Say hello {uuid.uuid4()}"  # unique: the shared Redis may remember other runs

    completion = await world.sdk.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )

    assert completion.choices[0].message.content == "Hello, world!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    sent = world.provider.requests[-1].body
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [{"role": "user", "content": prompt}]


async def test_an_identical_streamed_prompt_comes_from_redis_chunk_by_chunk_and_usage_is_kept(
    world: World,
) -> None:
    prompt = f"cache me {uuid.uuid4()}"

    async def stream() -> list[str]:
        chunks = await world.sdk.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            temperature=0,  # /v1 caches deterministic requests only
            stream=True,
            stream_options={"include_usage": True},
        )
        return [c.choices[0].delta.content or "" async for c in chunks if c.choices]

    calls_before = len(world.provider.requests)
    first = await stream()
    second = await stream()

    assert first == second == ["", "Hello", ", ", "world", "!", ""]
    assert len(world.provider.requests) == calls_before + 1
    uow = await resolved(world.container.adapters.unit_of_work())
    async with uow:
        since = world.container.adapters.clock().now() - timedelta(hours=1)
        totals = await uow.usage.totals(world.user_id, since=since, model="openai/gpt-4o-mini")
    assert (totals.requests, totals.completion_tokens) == (2, 8)
    assert totals.cost_usd > 0


async def test_the_model_list_follows_the_plan_and_configured_providers(world: World) -> None:
    models = [m.id async for m in world.sdk.models.list()]

    assert "openai/gpt-4o-mini" in models
    assert "dev/echo" in models
    assert "openai/gpt-4o" not in models  # a pro model; new accounts are on the free plan
    assert not any(m.startswith(("anthropic/", "xai/")) for m in models)  # no keys configured
