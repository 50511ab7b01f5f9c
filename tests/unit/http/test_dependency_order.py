"""A route's dependencies are resolved in turn on the request's own task (no task group per
request), with the same values and the same errors as Litestar's concurrent resolution."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.testing import AsyncTestClient

from whalli.entrypoints.http import dependency_order


def _app() -> Litestar:
    def on_task(name: str) -> Any:
        async def provide() -> dict[str, object]:
            return {"name": name, "task": asyncio.current_task()}

        return Provide(provide)

    async def refuse() -> str:
        raise NotAuthorizedException("refused by a dependency")

    @get("/two")
    async def two(
        first: NamedDependency[dict[str, object]], second: NamedDependency[dict[str, object]]
    ) -> dict[str, Any]:
        here = asyncio.current_task()
        return {
            "names": [first["name"], second["name"]],
            "on_the_request_task": [first["task"] is here, second["task"] is here],
        }

    @get("/refused", dependencies={"refusal": Provide(refuse)})
    async def refused(
        first: NamedDependency[dict[str, object]], refusal: NamedDependency[str]
    ) -> str:
        return "not reached"

    return Litestar(
        [two, refused], dependencies={"first": on_task("first"), "second": on_task("second")}
    )


async def test_two_independent_dependencies_resolve_on_the_request_task() -> None:
    assert dependency_order.install()
    async with AsyncTestClient(_app()) as client:
        answer = (await client.get("/two")).json()
    assert answer == {"names": ["first", "second"], "on_the_request_task": [True, True]}


async def test_an_error_in_one_dependency_is_the_routes_error() -> None:
    assert dependency_order.install()
    async with AsyncTestClient(_app()) as client:
        response = await client.get("/refused")
    assert response.status_code == 401
    assert "refused by a dependency" in response.text


def test_the_app_installs_it(app: Litestar) -> None:
    assert dependency_order.installed()
