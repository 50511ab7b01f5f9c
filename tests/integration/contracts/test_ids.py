"""Contract of ``IdGenerator``: ``SequentialIds`` (fake) and ``UuidGenerator`` (real)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from uuid import UUID

import pytest

from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.system.ids import UuidGenerator
from whalli.ports.ids import IdGenerator

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture(params=["fake", "real"])
def ids(request: pytest.FixtureRequest) -> IdGenerator:
    return SequentialIds() if request.param == "fake" else UuidGenerator()


def test_ids_are_version_7_rfc_uuids(ids: IdGenerator) -> None:
    new = ids.new_id()
    assert isinstance(new, UUID)
    assert (new.version, new.variant) == (7, "specified in RFC 4122")


def test_ids_from_one_generator_are_unique_and_strictly_increasing(ids: IdGenerator) -> None:
    generated = [ids.new_id() for _ in range(20_000)]
    assert generated == sorted(set(generated))


@pytest.mark.parametrize("nbytes", [16, 32, 48])
def test_tokens_are_url_safe_unique_and_as_long_as_the_random_bytes_require(
    ids: IdGenerator, nbytes: int
) -> None:
    tokens = [ids.new_token(nbytes) for _ in range(100)]
    assert len(set(tokens)) == 100
    assert all(URL_SAFE.match(t) for t in tokens)
    assert all(len(t) >= len(secrets.token_urlsafe(nbytes)) for t in tokens)


def test_the_default_token_is_long_enough_for_a_chat_session_id(ids: IdGenerator) -> None:
    assert len(ids.new_token()) >= 32


def test_a_uuid7_carries_its_creation_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    new = UuidGenerator().new_id()
    after = time.time_ns() // 1_000_000
    assert before <= new.int >> 80 <= after


def test_ids_made_by_many_threads_at_once_are_unique() -> None:
    ids = UuidGenerator()
    made: list[list[UUID]] = [[] for _ in range(8)]

    def work(bucket: list[UUID]) -> None:
        bucket.extend(ids.new_id() for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(bucket,)) for bucket in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    everything = [i for bucket in made for i in bucket]
    assert len(set(everything)) == len(everything)
    assert all(bucket == sorted(bucket) for bucket in made)
