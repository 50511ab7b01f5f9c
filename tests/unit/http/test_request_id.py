from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient


@pytest.mark.parametrize("request_id", ["abc-123", "A.b_c-9", "x" * 128])
async def test_a_well_formed_incoming_request_id_is_echoed(
    client: AsyncTestClient[Litestar], request_id: str
) -> None:
    response = await client.get("/api/health", headers={"X-Request-ID": request_id})

    assert response.headers["x-request-id"] == request_id


async def test_a_request_without_an_id_gets_a_fresh_one(
    client: AsyncTestClient[Litestar],
) -> None:
    first = await client.get("/api/health")
    second = await client.get("/api/health")

    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("request_id", ["", "x" * 129, "has space", "semi;colon", "ünï"])
async def test_a_malformed_incoming_request_id_is_replaced(
    client: AsyncTestClient[Litestar], request_id: str
) -> None:
    response = await client.get(
        "/api/health", headers=[(b"X-Request-ID", request_id.encode("utf-8"))]
    )

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_error_responses_carry_the_request_id_too(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/test/boom", headers={"X-Request-ID": "trace-me"})

    assert response.headers["x-request-id"] == "trace-me"
    assert response.json()["requestId"] == "trace-me"


async def test_a_streamed_response_passes_through_with_its_request_id(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/test/stream", headers={"X-Request-ID": "sse-1"})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "sse-1"
    assert response.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
