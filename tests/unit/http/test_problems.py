from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar, Request
from litestar.testing import AsyncTestClient

from tests.unit.http.routes import LEAKY_MESSAGE
from whalli.entrypoints.http.problems import problem_response

PROBLEM_JSON = "application/problem+json"


async def test_a_domain_error_becomes_a_problem_with_its_status_code_and_details(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/test/items/404", headers={"X-Request-ID": "req-1"})

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Chat not found.",
        "code": "chat_not_found",
        "instance": "/api/test/items/404",
        "requestId": "req-1",
        "chatId": "c-1",
    }


async def test_each_error_family_maps_to_its_status(client: AsyncTestClient[Litestar]) -> None:
    statuses = {
        code: (await client.get(f"/api/test/items/{code}")).status_code
        for code in (404, 413, 429, 503, 500)
    }

    assert statuses == {404: 404, 413: 413, 429: 429, 503: 503, 500: 500}


async def test_a_rate_limited_problem_says_when_to_retry(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/test/items/429")

    assert response.headers["retry-after"] == "30"
    assert response.json()["retryAfter"] == 30
    assert response.json()["code"] == "rate_limited"


async def test_an_unknown_route_is_a_404_problem(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/nope")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "not_found"
    assert response.json()["instance"] == "/api/nope"
    assert response.json()["requestId"] == response.headers["x-request-id"]


async def test_a_wrong_method_is_a_405_problem(client: AsyncTestClient[Litestar]) -> None:
    response = await client.delete("/api/health")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "method_not_allowed"


async def test_malformed_json_is_a_400_problem(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(
        "/api/test/notes", content=b'{"title": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 400


async def test_an_unknown_field_in_a_body_is_a_400_problem_naming_the_field(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.post(
        "/api/test/notes", json={"title": "a", "wordCount": 1, "colour": "red"}
    )

    assert response.status_code == 400
    assert "colour" in response.text


@pytest.mark.parametrize("body", [[], "a note", 42])
async def test_a_body_that_is_not_an_object_names_no_field(
    client: AsyncTestClient[Litestar], body: object
) -> None:
    response = await client.post("/api/test/notes", json=body)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["source"] == "body"
    assert "key" not in error  # not Litestar's name for the body ("data")
    assert error["message"].startswith("The request body must be a JSON object: Expected `object`")


async def test_a_body_missing_a_field_names_that_field(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/api/test/notes", json={"wordCount": 1})

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["key"], error["source"]) == ("title", "body")


async def test_a_valid_camel_case_body_round_trips(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/api/test/notes", json={"title": "a", "wordCount": 2})

    assert response.status_code == 201
    assert response.json() == {"title": "a", "wordCount": 2}


async def test_an_unhandled_exception_is_a_generic_500_problem_that_leaks_nothing(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/test/boom")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"] == "An unexpected error occurred."
    assert response.json()["code"] == "internal_error"
    for leaked in ("hunter2", "boom at", "secret_module", "RuntimeError", "Traceback"):
        assert leaked not in response.text
    assert LEAKY_MESSAGE not in response.text


@pytest.mark.parametrize("key", ["status", "type", "title", "detail", "instance", "code"])
def test_a_detail_named_like_a_problem_member_is_refused_not_dropped(key: str) -> None:
    request: Request[Any, Any, Any] = Request({"type": "http", "path": "/x", "state": {}})  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match=f"'{key}' clashes with the member"):
        problem_response(request, status=409, code="c", detail="d", extra={key: "failed"})
    made = problem_response(request, status=409, code="c", detail="d",
                            extra={"attachment_status": "failed"})  # fmt: skip
    assert msgspec.json.decode(made.content)["attachmentStatus"] == "failed"
