"""The OpenAPI document tells clients how to authenticate, and tells them the truth."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.config import Settings

BEARER_JWT = {"accessToken": []}
BEARER_API_KEY = {"apiKey": []}


@pytest.fixture
def container(probes: list[FakeProbe]) -> FakeContainer:
    # every route is called once below, more than the anonymous per-IP budget allows
    return FakeContainer(Settings(env="test", rate_limit_enabled=False), probes)


async def _document(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    response = await client.get("/api/docs/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_the_document_declares_a_bearer_jwt_and_a_bearer_api_key_scheme(
    client: AsyncTestClient[Litestar],
) -> None:
    schemes = (await _document(client))["components"]["securitySchemes"]

    assert schemes["accessToken"]["type"] == schemes["apiKey"]["type"] == "http"
    assert schemes["accessToken"]["scheme"] == schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["accessToken"]["bearerFormat"] == "JWT"


async def test_private_operations_require_a_scheme_and_public_ones_none(
    client: AsyncTestClient[Litestar],
) -> None:
    paths = (await _document(client))["paths"]

    assert paths["/api/keys"]["get"]["security"] == [BEARER_JWT, BEARER_API_KEY]
    assert paths["/api/auth/me"]["get"]["security"] == [BEARER_JWT, BEARER_API_KEY]
    assert paths["/v1/models"]["get"]["security"] == [BEARER_API_KEY, BEARER_JWT]
    assert paths["/v1/chat/completions"]["post"]["security"] == [BEARER_API_KEY, BEARER_JWT]
    # refused to API keys (403), so documented for access tokens only
    assert paths["/api/auth/password"]["post"]["security"] == [BEARER_JWT]
    assert paths["/api/auth/me"]["delete"]["security"] == [BEARER_JWT]
    assert paths["/api/keys"]["post"]["security"] == [BEARER_JWT]
    admin = {
        (path, method): operation["security"]
        for path, item in paths.items()
        if path.startswith("/api/admin/")
        for method, operation in item.items()
    }
    assert len(admin) == 4  # list users, update a user, a user's usage, the feedback summary
    assert set(map(str, admin.values())) == {str([BEARER_JWT])}, admin
    for path, method in [
        ("/api/health", "get"),
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/chat/stream", "get"),
        ("/api/shared/{token}", "get"),
    ]:
        assert "security" not in paths[path][method], path
    assert paths["/api/chats/{chat_id}/shares"]["post"]["security"] == [BEARER_JWT, BEARER_API_KEY]


async def test_every_operation_answers_401_without_credentials_exactly_when_it_requires_some(
    client: AsyncTestClient[Litestar],
) -> None:
    paths = (await _document(client))["paths"]
    checked = 0
    for path, item in paths.items():
        concrete = path.replace("{provider}", "github").replace("{session_id}", "s")
        concrete = concrete.replace("{token}", "a-shared-link-token")
        # every other id in a path (chat_id, preset_id, ...): routes added later are checked too
        concrete = re.sub(r"\{\w+_id\}", lambda _: str(uuid.uuid4()), concrete)
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            response = await client.request(method.upper(), concrete, json={})
            documented = "security" in operation
            assert (response.status_code == 401) is documented, (method, path, response.text)
            checked += 1
    assert checked >= 30


async def test_chat_start_documents_its_json_answer_and_its_event_stream(
    client: AsyncTestClient[Litestar],
) -> None:
    start = (await _document(client))["paths"]["/api/chat/start"]["post"]

    assert "text/event-stream" in start["description"]
    created = start["responses"]["201"]["content"]
    assert set(created) == {"application/json"}
    schema = json.dumps(created["application/json"]["schema"])
    assert "ChatStarted" in schema
