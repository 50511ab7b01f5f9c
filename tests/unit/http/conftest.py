from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer, FakeProbe
from tests.unit.http.routes import ProbeController
from whalli.config import Settings
from whalli.entrypoints.http.app import create_app


@pytest.fixture
def probes() -> list[FakeProbe]:
    return [FakeProbe("postgres"), FakeProbe("redis"), FakeProbe("s3")]


@pytest.fixture
def container(probes: list[FakeProbe]) -> FakeContainer:
    return FakeContainer(Settings(env="test"), probes)


@pytest.fixture
def app(container: FakeContainer) -> Litestar:
    return create_app(container, extra_route_handlers=[ProbeController])


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as client:
        yield client
