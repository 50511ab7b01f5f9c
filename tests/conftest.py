"""Session-wide fixtures: the real services every integration test uses.

The embedded stack (under ``.whalli/test-stack``) is started once per test session, unless
``WHALLI_DATABASE_URL``, ``WHALLI_REDIS_URL`` and ``WHALLI_S3_ENDPOINT`` name servers to use.
Only what this session started is stopped at the end.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from minio import Minio

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
def stack_urls(test_stack: EmbeddedStack | None) -> Iterator[StackUrls]:
    """The services' URLs. At the end of the session, the buckets its tests made (named with a
    ``new_unique`` suffix) are deleted: object storage has a fixed number of volumes, and each
    bucket takes some, so a stack kept between runs would otherwise fill up."""
    urls = _external_urls()
    if urls is None:
        assert test_stack is not None
        urls = test_stack.urls()
        assert urls is not None, "the embedded test stack is not running"
    try:
        yield urls
    finally:
        _drop_buckets(urls, frozenset(_UNIQUES))


_UNIQUES: set[str] = set()


def new_unique() -> str:
    """A short unique suffix so tests can share one database, Redis and object store. A bucket
    whose name holds one is deleted at the end of the session (``stack_urls``)."""
    suffix = uuid.uuid4().hex[:12]
    _UNIQUES.add(suffix)
    return suffix


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests can share one database, Redis and bucket."""
    return new_unique()


def _drop_buckets(urls: StackUrls, suffixes: frozenset[str]) -> None:
    """Delete the buckets named with one of ``suffixes``, and what they hold. Other buckets
    (another session's, or ones kept on purpose) are left alone."""
    if not suffixes:
        return
    endpoint = urlsplit(urls.s3_endpoint)
    client = Minio(
        endpoint.netloc,
        access_key=urls.s3_access_key,
        secret_key=urls.s3_secret_key,
        secure=endpoint.scheme == "https",
    )
    try:
        buckets = [b.name for b in client.list_buckets()]
    except Exception as e:  # the store is down: nothing to clean, and no reason to fail
        print(f"\ntest buckets not deleted: {e!r}", file=sys.stderr)
        return
    for name in buckets:
        if not any(suffix in name for suffix in suffixes):
            continue
        try:
            for obj in client.list_objects(name, recursive=True):
                if obj.object_name is not None:
                    client.remove_object(name, obj.object_name)
            client.remove_bucket(name)
        except Exception as e:
            print(f"\ntest bucket {name} not deleted: {e!r}", file=sys.stderr)
