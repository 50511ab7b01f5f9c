"""The password policy (ASVS 5.0 V6.2) and argon2id hashing."""

from __future__ import annotations

import unicodedata

import argon2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whalli.adapters.crypto.argon2_hasher import Argon2PasswordHasher
from whalli.domain.model.errors import InvalidInput, InvalidPassword
from whalli.domain.model.passwords import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    normalize_password,
    validate_password,
)

EMOJI = "\N{GRINNING FACE}"  # one code point, four UTF-8 bytes
E_ACUTE_DECOMPOSED = "e\N{COMBINING ACUTE ACCENT}"  # NFC composes it into one code point
Q_ACUTE = "q\N{COMBINING ACUTE ACCENT}"  # no precomposed form: stays two code points
# Alpha with three marks: four code points that NFC composes into one (U+1F87), the most it does.
ALPHA_FOUR = "\N{GREEK SMALL LETTER ALPHA}\u0314\u0342\u0345"
FAMILY = "\N{WOMAN}\N{ZERO WIDTH JOINER}\N{WOMAN}\N{ZERO WIDTH JOINER}\N{GIRL}"  # 5 code points


@pytest.fixture(scope="module")
def hasher() -> Argon2PasswordHasher:
    return Argon2PasswordHasher()


# --- policy ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "password",
    [
        "a" * 8,
        "a" * 128,
        EMOJI * 8,
        EMOJI * 128,
        E_ACUTE_DECOMPOSED * 8,
        E_ACUTE_DECOMPOSED * 128,
        Q_ACUTE * 4,
        Q_ACUTE * 64,
        ALPHA_FOUR * 128,
        FAMILY + "abc",
        "abcdefg ",
        " " * 8,
        "password",
    ],
    ids=[
        "8-ascii",
        "128-ascii",
        "8-emoji",
        "128-emoji",
        "8-composed-accents",
        "128-composed-accents",
        "8-uncomposable-accents",
        "128-uncomposable-accents",
        "512-code-points-composing-into-128",
        "zwj-sequence-counts-code-points",
        "trailing-space-counts",
        "only-spaces",
        "no-composition-rules",
    ],
)
def test_passwords_of_8_to_128_code_points_after_nfc_are_accepted(password: str) -> None:
    assert validate_password(password) == unicodedata.normalize("NFC", password)


@pytest.mark.parametrize(
    "password",
    ["", "a" * 7, EMOJI * 7, E_ACUTE_DECOMPOSED * 7, Q_ACUTE * 3 + "a", FAMILY + "ab"],
    ids=["empty", "7-ascii", "7-emoji", "7-composed-accents", "7-uncomposable", "7-with-zwj"],
)
def test_passwords_shorter_than_8_code_points_break_the_min_length_rule(password: str) -> None:
    with pytest.raises(InvalidPassword, match="at least 8 characters") as info:
        validate_password(password)
    assert info.value.details["rule"] == "min_length"


@pytest.mark.parametrize(
    "password",
    [
        "a" * 129,
        EMOJI * 129,
        E_ACUTE_DECOMPOSED * 129,
        Q_ACUTE * 64 + "a",
        ALPHA_FOUR * 129,
        "a" * 1_000_000,
    ],
    ids=[
        "129-ascii",
        "129-emoji",
        "129-composed-accents",
        "129-uncomposable",
        "516-code-points-composing-into-129",
        "huge",
    ],
)
def test_passwords_longer_than_128_code_points_break_the_max_length_rule(password: str) -> None:
    with pytest.raises(InvalidPassword, match="at most 128 characters") as info:
        validate_password(password)
    assert info.value.details["rule"] == "max_length"


def test_a_policy_error_is_invalid_input_and_never_contains_the_password() -> None:
    with pytest.raises(InvalidInput, match="at least") as info:
        validate_password("s3cr3t!")
    assert info.value.code == "invalid_password"
    assert "s3cr3t!" not in str(info.value)
    assert "s3cr3t!" not in repr(info.value.details)


@given(st.text(max_size=600))
def test_any_text_is_either_a_valid_nfc_password_or_refused_by_a_length_rule(text: str) -> None:
    normalized = unicodedata.normalize("NFC", text)
    if len(normalized) < PASSWORD_MIN_LENGTH:
        with pytest.raises(InvalidPassword, match="at least") as info:
            validate_password(text)
        assert info.value.details["rule"] == "min_length"
    elif len(normalized) > PASSWORD_MAX_LENGTH:
        with pytest.raises(InvalidPassword, match="at most") as info:
            validate_password(text)
        assert info.value.details["rule"] == "max_length"
    else:
        assert validate_password(text) == normalized


def test_the_limits_are_those_of_the_policy() -> None:
    assert (PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH) == (8, 128)


# --- hashing ---------------------------------------------------------------------------------
def test_a_hash_is_argon2id_with_the_owasp_minimum_parameters(hasher: Argon2PasswordHasher) -> None:
    stored = hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "correct horse" not in stored


def test_the_right_password_verifies_and_a_wrong_one_does_not(
    hasher: Argon2PasswordHasher,
) -> None:
    stored = hasher.hash("correct horse battery staple")
    assert hasher.verify(stored, "correct horse battery staple")
    assert not hasher.verify(stored, "correct horse battery stapl")
    assert not hasher.verify(stored, "Correct horse battery staple")
    assert not hasher.verify(stored, "")


def test_each_hash_of_one_password_has_its_own_salt(hasher: Argon2PasswordHasher) -> None:
    assert hasher.hash("same password") != hasher.hash("same password")


def test_a_password_typed_composed_or_decomposed_verifies_either_way(
    hasher: Argon2PasswordHasher,
) -> None:
    stored = hasher.hash("caf" + E_ACUTE_DECOMPOSED + " au lait")
    assert hasher.verify(stored, "caf\N{LATIN SMALL LETTER E WITH ACUTE} au lait")


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$xx$yy"])
def test_a_malformed_stored_hash_fails_closed(hasher: Argon2PasswordHasher, stored: str) -> None:
    assert not hasher.verify(stored, "anything at all")
    assert hasher.needs_rehash(stored)


def test_a_hash_made_with_the_current_parameters_needs_no_rehash(
    hasher: Argon2PasswordHasher,
) -> None:
    assert not hasher.needs_rehash(hasher.hash("a fine password"))


@pytest.mark.parametrize(
    "stronger",
    [{"memory_kib": 2 * 19_456}, {"time_cost": 3}],
    ids=["more-memory", "more-passes"],
)
def test_raising_the_parameters_makes_older_hashes_need_a_rehash(
    hasher: Argon2PasswordHasher, stronger: dict[str, int]
) -> None:
    old = hasher.hash("a fine password")
    upgraded = Argon2PasswordHasher(**stronger)
    assert upgraded.verify(old, "a fine password")
    assert upgraded.needs_rehash(old)
    assert not upgraded.needs_rehash(upgraded.hash("a fine password"))


def test_a_hash_stronger_than_the_current_parameters_is_not_downgraded(
    hasher: Argon2PasswordHasher,
) -> None:
    stronger = Argon2PasswordHasher(memory_kib=2 * 19_456, time_cost=3).hash("a fine password")
    assert hasher.verify(stronger, "a fine password")
    assert not hasher.needs_rehash(stronger)


def test_an_argon2i_hash_verifies_but_needs_a_rehash_to_argon2id(
    hasher: Argon2PasswordHasher,
) -> None:
    legacy = argon2.PasswordHasher(
        time_cost=2, memory_cost=19_456, parallelism=1, type=argon2.Type.I
    ).hash("a fine password")
    assert hasher.verify(legacy, "a fine password")
    assert hasher.needs_rehash(legacy)


@pytest.mark.parametrize(
    ("weaker", "message"),
    [
        ({"memory_kib": 19_455}, "memory must be at least 19456 KiB"),
        ({"time_cost": 1}, "time cost must be at least 2"),
        ({"parallelism": 0}, "parallelism must be at least 1"),
    ],
)
def test_parameters_below_the_owasp_floor_are_refused(weaker: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Argon2PasswordHasher(**weaker)


def test_dummy_verify_runs_a_verification_and_returns_nothing(
    hasher: Argon2PasswordHasher,
) -> None:
    assert hasher.dummy_verify() is None  # type: ignore[func-returns-value]


def _valid(password: str) -> bool:
    return PASSWORD_MIN_LENGTH <= len(normalize_password(password)) <= PASSWORD_MAX_LENGTH


# argon2 is slow on purpose: few examples, no deadline.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=st.text(min_size=PASSWORD_MIN_LENGTH, max_size=PASSWORD_MAX_LENGTH).filter(_valid))
def test_every_valid_password_verifies_against_its_own_hash_only(
    hasher: Argon2PasswordHasher, password: str
) -> None:
    stored = hasher.hash(validate_password(password))
    assert hasher.verify(stored, password)
    assert not hasher.verify(stored, password + "x")
