"""The PasswordHasher contract, for the fast fake and argon2id (both in-process, no server)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from whalli.adapters.crypto.argon2_hasher import Argon2PasswordHasher
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.ports.password_hasher import PasswordHasher

MakeHasher = Callable[[bool], PasswordHasher]


@pytest.fixture(params=["fake", "real"])
def make_hasher(request: pytest.FixtureRequest) -> MakeHasher:
    """``make_hasher(stronger)``: the baseline hasher, or one with raised parameters."""
    if request.param == "fake":
        return lambda stronger: FastPasswordHasher(cost=2 if stronger else 1)
    return lambda stronger: Argon2PasswordHasher(memory_kib=2 * 19_456 if stronger else 19_456)


@pytest.fixture
def hasher(make_hasher: MakeHasher) -> PasswordHasher:
    return make_hasher(False)


def test_a_password_verifies_against_its_hash_and_others_do_not(hasher: PasswordHasher) -> None:
    stored = hasher.hash("correct horse battery staple")
    assert "correct horse" not in stored
    assert hasher.verify(stored, "correct horse battery staple")
    assert not hasher.verify(stored, "correct horse battery staplE")


def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    assert hasher.hash("same password") != hasher.hash("same password")


def test_the_password_is_compared_in_nfc(hasher: PasswordHasher) -> None:
    stored = hasher.hash("cafe\N{COMBINING ACUTE ACCENT} au lait")
    assert hasher.verify(stored, "caf\N{LATIN SMALL LETTER E WITH ACUTE} au lait")


@pytest.mark.parametrize("stored", ["", "garbage", "$argon2id$v=19$m=1,t=1,p=1$x$y", "fake$1$x"])
def test_a_malformed_hash_fails_closed_and_needs_a_rehash(
    hasher: PasswordHasher, stored: str
) -> None:
    assert not hasher.verify(stored, "anything")
    assert hasher.needs_rehash(stored)


def test_only_hashes_weaker_than_the_current_parameters_need_a_rehash(
    make_hasher: MakeHasher,
) -> None:
    baseline, stronger = make_hasher(False), make_hasher(True)
    old, new = baseline.hash("pw-123456"), stronger.hash("pw-123456")
    assert not baseline.needs_rehash(old)
    assert stronger.needs_rehash(old)
    assert not baseline.needs_rehash(new)
    assert stronger.verify(old, "pw-123456")


def test_dummy_verify_returns_nothing(hasher: PasswordHasher) -> None:
    assert hasher.dummy_verify() is None  # type: ignore[func-returns-value]
