"""The composition root: builds without connecting, and swaps adapters by override."""

from __future__ import annotations

from dependency_injector import providers
from litestar.testing import AsyncTestClient

from tests.support.pwned_passwords import FakePwnedPasswords
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.rate_limiter import InMemoryRateLimiter
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.adapters.system.clock import SystemClock
from whalli.config import load_settings
from whalli.container import build_container
from whalli.domain.model.passwords import PasswordExposure
from whalli.entrypoints.http.asgi import build_app

# Nothing listens on these: building the container and app must not try to reach them.
UNREACHABLE = {
    "WHALLI_ENV": "test",
    "WHALLI_DATABASE_URL": "postgresql://u:p@127.0.0.1:9/none",
    "WHALLI_REDIS_URL": "redis://:p@127.0.0.1:9/0",
    "WHALLI_S3_ENDPOINT": "http://127.0.0.1:9",
    "WHALLI_S3_ACCESS_KEY": "k",
    "WHALLI_S3_SECRET_KEY": "s",
    "WHALLI_JWT_SECRET": "unit-" + "y" * 40,
    "WHALLI_PASSWORD_HASH_MEMORY_KIB": "19456",
}


def test_building_the_container_and_app_connects_to_nothing() -> None:
    container = build_container(load_settings(UNREACHABLE, dotenv=None))
    app = build_app(container.settings(), container)
    assert app.route_handler_method_map  # built, without any server answering


async def test_adapters_are_swapped_through_the_container_not_by_patching() -> None:
    container = build_container(load_settings(UNREACHABLE, dotenv=None))
    store = MemoryStore()
    clock = SystemClock()
    container.adapters.unit_of_work.override(providers.Factory(InMemoryUnitOfWork, store))
    container.adapters.rate_limiter.override(providers.Object(InMemoryRateLimiter(clock)))
    container.adapters.cache.override(providers.Object(InMemoryCache(clock)))
    app = build_app(container.settings(), container)
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            "/api/auth/register",
            json={"email": "swap@example.com", "password": "long enough password"},
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["user"]["id"]
    async with InMemoryUnitOfWork(store) as uow:
        user = await uow.users.find_by_email("swap@example.com")
    assert user is not None
    assert str(user.id) == user_id


async def test_new_passwords_are_screened_offline_by_default_without_an_http_client() -> None:
    container = build_container(load_settings(UNREACHABLE, dotenv=None))

    screen = container.adapters.password_screen()

    assert isinstance(screen, CommonPasswordList)
    assert not container.gateways.http.initialized
    assert await screen.screen("Password123") is PasswordExposure.COMMON


async def test_a_pwned_passwords_url_adds_the_breach_screen_on_the_shared_client() -> None:
    hibp = FakePwnedPasswords().start()
    hibp.breach("breached in the container test", 5)
    environ = UNREACHABLE | {"WHALLI_PWNED_PASSWORDS_URL": hibp.url}
    container = build_container(load_settings(environ, dotenv=None))
    try:
        screen = await container.adapters.password_screen()  # opens the HTTP client
        assert container.gateways.http.initialized
        assert await screen.screen("Password123") is PasswordExposure.COMMON
        assert await screen.screen("breached in the container test") is PasswordExposure.BREACHED
        assert await screen.screen("correct horse battery") is None
        assert len(hibp.requests) == 2
    finally:
        await container.shutdown_resources()
        hibp.stop()
