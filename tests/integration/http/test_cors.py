"""CORS through the real app (Postgres, Redis): a browser page at the web app's origin may call
the API by default; any origin only when configured (``WHALLI_CORS_ORIGINS=*``: OpenAI
clients running in a browser). Preflights are answered before routing and authentication."""

from __future__ import annotations

import uuid

from tests.integration.http.test_chat_flow import _app
from tests.support.fake_providers import FakeProviderServer, openai_default
from whalli.adapters.embedded.stack import StackUrls

WEB = "https://chat.example.org"


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
    }


async def test_the_web_apps_origin_may_call_the_api_and_no_other(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider, WHALLI_WEB_URL=f"{WEB}/app/") as chat,
    ):
        allowed = await chat.client.options("/api/chat/start", headers=_preflight(WEB))
        assert allowed.status_code in (200, 204), allowed.text
        assert allowed.headers["access-control-allow-origin"] == WEB
        granted = allowed.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "last-event-id"} <= set(granted.split(", "))
        assert "access-control-allow-credentials" not in allowed.headers

        other = await chat.client.options(
            "/api/chat/start", headers=_preflight("https://evil.example")
        )
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code >= 400

        alice = await chat.world.register("alice")
        answered = await chat.client.get("/api/models", headers={**alice["auth"], "Origin": WEB})
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == WEB
        exposed = answered.headers["access-control-expose-headers"].lower()
        assert {"retry-after", "x-request-id"} <= set(exposed.split(", "))
        foreign = await chat.client.get(
            "/api/models", headers={**alice["auth"], "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in foreign.headers

        # the reply stream (answered below Litestar), as an EventSource at that origin reads it
        started = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message="hi")
        url = f"/api/chat/stream?sessionId={started['sessionId']}"
        async with chat.client.stream("GET", url, headers={"Origin": WEB}) as stream:
            assert stream.status_code == 200
            assert stream.headers["access-control-allow-origin"] == WEB
            assert stream.headers["content-type"].startswith("text/event-stream")


async def test_any_origin_when_configured_reaches_v1(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider, WHALLI_CORS_ORIGINS="*") as chat,
    ):
        somewhere = "https://typingmind.example"
        preflight = await chat.client.options("/v1/chat/completions", headers=_preflight(somewhere))
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-allow-origin"] in ("*", somewhere)

        alice = await chat.world.register("alice")
        created = await chat.client.post("/api/keys", json={"name": "web"}, headers=alice["auth"])
        key = created.json()["secret"]
        answer = await chat.client.post(
            "/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": [
                {"role": "user", "content": f"hi {uuid.uuid4()}"}
            ]},
            headers={"Authorization": f"Bearer {key}", "Origin": somewhere},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == "*"
