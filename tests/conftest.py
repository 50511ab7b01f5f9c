"""Session-wide fixtures: the real services every integration test uses.

The embedded stack (under ``.whalli/test-stack``) is started once per test session, unless
``WHALLI_DATABASE_URL``, ``WHALLI_REDIS_URL`` and ``WHALLI_S3_ENDPOINT`` name servers to use.
Only what this session started is stopped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from whalli.adapters.embedded.stack import EmbeddedStack, StackUrls

ROOT = Path(__file__).resolve().parents[1]
TEST_STACK_DIR = ROOT / ".whalli" / "test-stack"


def _external_urls() -> StackUrls | None:
    env = os.environ
    if not all(
        env.get(k) for k in ("WHALLI_DATABASE_URL", "WHALLI_REDIS_URL", "WHALLI_S3_ENDPOINT")
    ):
        return None
    return StackUrls(
        database_url=env["WHALLI_DATABASE_URL"],
        redis_url=env["WHALLI_REDIS_URL"],
        s3_endpoint=env["WHALLI_S3_ENDPOINT"],
        s3_access_key=env.get("WHALLI_S3_ACCESS_KEY", ""),
        s3_secret_key=env.get("WHALLI_S3_SECRET_KEY", ""),
    )


@pytest.fixture(scope="session")
def test_stack() -> Iterator[EmbeddedStack | None]:
    if _external_urls() is not None:
        yield None
        return
    stack = EmbeddedStack(TEST_STACK_DIR, fast=True)
    _, started = stack.up()
    try:
        yield stack
    finally:
        if started:
            stack.down(only=started)


@pytest.fixture(scope="session")
def stack_urls(test_stack: EmbeddedStack | None) -> StackUrls:
    external = _external_urls()
    if external is not None:
        return external
    assert test_stack is not None
    urls = test_stack.urls()
    assert urls is not None, "the embedded test stack is not running"
    return urls


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests can share one database, Redis and bucket."""
    return uuid.uuid4().hex[:12]
