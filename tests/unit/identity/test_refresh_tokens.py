"""Opaque rotating refresh tokens: lineage, the family's absolute lifetime, reuse, hashing."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.errors import InvalidToken, RefreshTokenReused
from whalli.domain.model.tokens import (
    DEFAULT_REFRESH_TTL,
    REFRESH_SECRET_BYTES,
    REFRESH_SECRET_MIN_LENGTH,
    RefreshToken,
    hash_refresh_secret,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
USER = uuid.UUID("01890000-0000-7000-8000-000000000001")
FAMILY = uuid.UUID("01890000-0000-7000-8000-0000000000f1")
ids = UuidGenerator()


def secret() -> str:
    return ids.new_token(REFRESH_SECRET_BYTES)


def login(now: datetime = T0, token_secret: str | None = None) -> RefreshToken:
    return RefreshToken.issue(
        id=ids.new_id(), user_id=USER, family_id=FAMILY, secret=token_secret or secret(), now=now
    )


# --- hashing and secrets --------------------------------------------------------------------------
def test_the_stored_hash_is_the_sha256_hex_of_the_secret() -> None:
    token_secret = secret()
    token = login(token_secret=token_secret)
    assert token.token_hash == hashlib.sha256(token_secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", token.token_hash)
    assert token_secret not in repr(token)


@given(st.text())
def test_hash_refresh_secret_is_sha256_hex_for_any_text(text: str) -> None:
    digest = hash_refresh_secret(text)
    assert digest == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_secrets_carry_at_least_256_random_bits() -> None:
    token_secret = secret()
    raw = base64.urlsafe_b64decode(token_secret + "=" * (-len(token_secret) % 4))
    assert len(raw) * 8 >= 256
    assert len(token_secret) >= REFRESH_SECRET_MIN_LENGTH
    assert len({secret() for _ in range(1000)}) == 1000


def test_a_secret_too_short_to_hold_256_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="256 random bits"):
        login(token_secret="s" * (REFRESH_SECRET_MIN_LENGTH - 1))
    with pytest.raises(ValueError, match="256 random bits"):
        login().rotate(new_id=ids.new_id(), new_secret="short", now=T0)


def test_a_token_matches_its_own_secret_only() -> None:
    token_secret = secret()
    token = login(token_secret=token_secret)
    assert token.matches(token_secret)
    assert not token.matches(secret())
    assert not token.matches(token_secret[:-1])


# --- rotation -------------------------------------------------------------------------------------
def test_a_login_starts_a_family_that_ends_30_days_later() -> None:
    token = login()
    assert token.parent_id is None
    assert token.family_id == FAMILY
    assert token.created_at == T0
    assert token.expires_at == T0 + timedelta(days=30) == T0 + DEFAULT_REFRESH_TTL
    assert token.is_active(T0)


def test_rotating_spends_the_token_and_links_its_successor() -> None:
    parent = login()
    child_secret = secret()
    later = T0 + timedelta(hours=1)
    child = parent.rotate(new_id=ids.new_id(), new_secret=child_secret, now=later)
    assert parent.used_at == later
    assert not parent.is_active(later)
    assert child.is_active(later)
    assert (child.parent_id, child.family_id, child.user_id) == (parent.id, FAMILY, USER)
    assert child.token_hash == hash_refresh_secret(child_secret) != parent.token_hash
    assert child.created_at == later
    assert child.id != parent.id


def test_a_chain_of_rotations_keeps_one_lineage_and_one_end() -> None:
    chain = [login()]
    for day in range(1, 6):
        chain.append(
            chain[-1].rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(days=day))
        )
    assert [t.parent_id for t in chain[1:]] == [t.id for t in chain[:-1]]
    assert {t.family_id for t in chain} == {FAMILY}
    assert {t.expires_at for t in chain} == {T0 + timedelta(days=30)}
    assert [t.is_active(T0 + timedelta(days=5)) for t in chain] == [False] * 5 + [True]


def test_rotation_never_extends_the_familys_absolute_lifetime() -> None:
    token = login()
    day_29 = T0 + timedelta(days=29)
    late_child = token.rotate(new_id=ids.new_id(), new_secret=secret(), now=day_29)
    assert late_child.expires_at == T0 + timedelta(days=30)
    assert late_child.is_active(T0 + timedelta(days=30) - timedelta(seconds=1))
    assert not late_child.is_active(T0 + timedelta(days=30))


def test_a_token_cannot_be_rotated_once_the_family_has_expired() -> None:
    token = login()
    with pytest.raises(InvalidToken, match="expired or was revoked"):
        token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(days=30))
    assert token.used_at is None


def test_presenting_a_spent_token_again_is_reported_as_reuse() -> None:
    token = login()
    token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(minutes=1))
    with pytest.raises(RefreshTokenReused, match="invalid or has expired") as info:
        token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(minutes=2))
    assert isinstance(info.value, InvalidToken)
    assert info.value.code == "refresh_token_reused"
    assert token.used_at == T0 + timedelta(minutes=1)


GRACE = timedelta(seconds=10)


def test_a_spent_token_presented_within_the_grace_window_gets_a_sibling_successor() -> None:
    token = login()
    first = token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(minutes=1))
    second_secret = secret()
    second = token.reissue(
        new_id=ids.new_id(), new_secret=second_secret, now=T0 + timedelta(minutes=1, seconds=10),
        grace=GRACE,
    )  # fmt: skip
    assert second.parent_id == token.id == first.parent_id
    assert second.family_id == FAMILY
    assert second.expires_at == first.expires_at == token.expires_at
    assert second.matches(second_secret)
    assert second.token_hash != first.token_hash
    assert second.is_active(T0 + timedelta(minutes=2))
    assert token.used_at == T0 + timedelta(minutes=1)  # the window does not slide


@pytest.mark.parametrize(
    ("grace", "after"),
    [(GRACE, timedelta(seconds=10, microseconds=1)), (GRACE, timedelta(hours=1)),
     (timedelta(0), timedelta(0))],
)  # fmt: skip
def test_a_spent_token_presented_after_the_grace_window_is_reuse(
    grace: timedelta, after: timedelta
) -> None:
    token = login()
    token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0)
    with pytest.raises(RefreshTokenReused):
        token.reissue(new_id=ids.new_id(), new_secret=secret(), now=T0 + after, grace=grace)


def test_a_revoked_or_expired_spent_token_is_not_reissued_even_within_the_window() -> None:
    token = login()
    token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(days=30, seconds=-5))
    with pytest.raises(InvalidToken, match="expired or was revoked"):
        token.reissue(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(days=30),
                      grace=GRACE)  # fmt: skip
    revoked = login()
    revoked.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0)
    revoked.revoke(T0 + timedelta(seconds=1))
    with pytest.raises(InvalidToken, match="expired or was revoked"):
        revoked.reissue(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(seconds=2),
                        grace=GRACE)  # fmt: skip


def test_an_active_token_is_rotated_not_reissued() -> None:
    with pytest.raises(ValueError, match="spent"):
        login().reissue(new_id=ids.new_id(), new_secret=secret(), now=T0, grace=GRACE)


def test_a_revoked_token_is_inactive_and_cannot_be_rotated() -> None:
    token = login()
    token.revoke(T0 + timedelta(minutes=1))
    token.revoke(T0 + timedelta(minutes=2))
    assert token.revoked_at == T0 + timedelta(minutes=1)
    assert not token.is_active(T0 + timedelta(minutes=1))
    with pytest.raises(InvalidToken, match="expired or was revoked"):
        token.rotate(new_id=ids.new_id(), new_secret=secret(), now=T0 + timedelta(minutes=3))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        login(now=datetime(2030, 1, 1, 12, 0))


@given(st.lists(st.integers(min_value=1, max_value=3600), min_size=1, max_size=20))
def test_any_sequence_of_rotations_leaves_exactly_the_newest_token_active(
    gaps: list[int],
) -> None:
    chain = [login()]
    now = T0
    for gap in gaps:
        now += timedelta(seconds=gap)
        chain.append(chain[-1].rotate(new_id=ids.new_id(), new_secret=secret(), now=now))
    assert [t.is_active(now) for t in chain] == [False] * len(gaps) + [True]
    assert chain[-1].expires_at == chain[0].created_at + DEFAULT_REFRESH_TTL
