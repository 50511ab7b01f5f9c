"""A forgotten password, end to end: the app on real Postgres and Redis queues the request,
the production worker (``whalli worker``, a subprocess on the same queue) emails the link
through a loopback SMTP server (``FakeSmtpServer``), and the link sets a new password once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.integration.http.test_identity_end_to_end import PASSWORD, World, _settings
from tests.support.fake_smtp import FakeSmtpServer, Received
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

WEB_URL = "https://chat.whalli.test"
LINK = re.compile(rf"^{re.escape(WEB_URL)}/reset-password#token=([A-Za-z0-9_.-]+)\r?$", re.M)
NEW_PASSWORD = "a brand new passphrase"


@dataclass
class Reset:
    world: World
    smtp: FakeSmtpServer

    @property
    def client(self) -> AsyncTestClient[Litestar]:
        return self.world.client

    async def forgot(self, email: str) -> None:
        asked = await self.client.post("/api/auth/password/forgot", json={"email": email})
        assert asked.status_code == 202, asked.text
        assert asked.json()["message"].startswith("If an account uses this address")

    async def mail_to(self, email: str, count: int = 1) -> list[Received]:
        """The messages sent to ``email`` once there are ``count`` (the worker runs apart)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = [m for m in self.smtp.messages if m.rcpt_to == [email]]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"no email to {email} within 60 s: {self.smtp.messages!r}")

    async def login(self, email: str, password: str) -> int:
        answer = await self.client.post(
            "/api/auth/login", json={"email": email, "password": password}
        )
        return answer.status_code


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def reset(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, smtp: FakeSmtpServer,
    tmp_path: Path,
) -> AsyncIterator[Reset]:  # fmt: skip
    env = {
        "WHALLI_QUEUE_NAME": f"q-{unique}",
        "WHALLI_SMTP_HOST": "127.0.0.1",
        "WHALLI_SMTP_PORT": str(smtp.port),
        "WHALLI_SMTP_TLS": "none",
        "WHALLI_SMTP_FROM": "Whalli <accounts@whalli.test>",
        "WHALLI_WEB_URL": WEB_URL,
    }
    settings = _settings(stack_urls, unique, **env)
    worker_env: dict[str, Any] = {
        **os.environ,
        "WHALLI_ENV": "test",
        "WHALLI_DATABASE_URL": stack_urls.database_url,
        "WHALLI_REDIS_URL": stack_urls.redis_url,
        "WHALLI_S3_ENDPOINT": stack_urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": stack_urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": stack_urls.s3_secret_key,
        "WHALLI_JWT_SECRET": settings.jwt_secret.reveal(),
        "WHALLI_WORKER_THREADS": "1",  # one job at a time: the queue's order is the mail's
        "WHALLI_LOG_DIR": str(tmp_path / "logs"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **env,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "whalli.entrypoints.cli.main", "worker"],
        env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        container = build_container(settings)
        async with AsyncTestClient(app=build_app(settings, container)) as client:
            yield Reset(World(client, container), smtp)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert settings.jwt_secret.reveal() not in stderr.decode()


async def test_a_forgotten_password_is_reset_through_the_emailed_link_once(reset: Reset) -> None:
    ada = await reset.world.register("ada")
    email = ada["email"]
    stranger = f"nobody-{email}"

    await reset.forgot(stranger)  # no account: the same 202, and no email
    await reset.forgot(email.upper())
    [mail] = await reset.mail_to(email)

    assert [m.rcpt_to for m in reset.smtp.messages] == [[email]]
    message = mail.parsed()
    assert message["Subject"] == "Reset your Whalli password"
    assert message["From"] == "Whalli <accounts@whalli.test>"
    found = LINK.search(message.get_content())
    assert found is not None, message.get_content()
    token = found.group(1)

    answer = await reset.client.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": NEW_PASSWORD}
    )

    assert answer.status_code == 200, answer.text
    signed_in = {"Authorization": f"Bearer {answer.json()['accessToken']}"}
    me = await reset.client.get("/api/auth/me", headers=signed_in)
    assert me.json()["email"] == email
    assert me.json()["emailVerified"] is True
    assert await reset.login(email, NEW_PASSWORD) == 200
    assert await reset.login(email, PASSWORD) == 401
    before = await reset.client.get("/api/auth/me", headers=ada["auth"])
    assert before.status_code == 401  # the session from before the reset ended at once
    again = await reset.client.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": "another passphrase!"}
    )
    assert again.status_code == 422
    assert again.json()["code"] == "password_reset_invalid"
    assert token not in again.text


async def test_without_a_mail_server_a_reset_request_is_refused_at_once(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    settings = _settings(stack_urls, unique)
    container = build_container(settings)
    async with AsyncTestClient(app=build_app(settings, container)) as client:
        answer = await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})

    assert answer.status_code == 422
    assert answer.json()["code"] == "password_reset_not_configured"


VERIFY_LINK = re.compile(rf"^{re.escape(WEB_URL)}/verify-email#token=([A-Za-z0-9_.-]+)\r?$", re.M)


async def test_a_password_sign_up_verifies_its_address_through_the_emailed_link(
    reset: Reset,
) -> None:
    ada = await reset.world.register("ada")
    asked = await reset.client.post("/api/auth/email/verify", headers=ada["auth"])
    assert asked.status_code == 202, asked.text

    [mail] = await reset.mail_to(ada["email"])
    message = mail.parsed()
    assert message["Subject"] == "Confirm your email address for Whalli"
    found = VERIFY_LINK.search(message.get_content())
    assert found is not None, message.get_content()
    confirmed = await reset.client.post(
        "/api/auth/email/confirm", json={"token": found.group(1)}, headers=ada["auth"]
    )

    assert confirmed.status_code == 200, confirmed.text
    me = await reset.client.get("/api/auth/me", headers=ada["auth"])
    assert me.json()["emailVerified"] is True
    again = await reset.client.post("/api/auth/email/verify", headers=ada["auth"])
    assert again.status_code == 409
