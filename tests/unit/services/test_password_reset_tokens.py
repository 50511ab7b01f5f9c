"""Password reset tokens (``HmacPasswordResetTokens``): signed for one account as it is, once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.crypto.password_resets import HmacPasswordResetTokens
from whalli.domain.model.errors import PasswordResetInvalid
from whalli.domain.model.users import User

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "a test secret for password resets, 32+ bytes"
TOKENS = HmacPasswordResetTokens(SECRET)


def _user(**changes: object) -> User:
    user = User.create(
        id=uuid.uuid4(), email="ada@example.com", now=NOW, password_hash="$argon2id$v=19$one"
    )
    return msgspec.structs.replace(user, **changes)


def test_a_token_names_its_user_until_it_expires() -> None:
    user = _user()
    token = TOKENS.issue(user, NOW + timedelta(minutes=30))

    assert TOKENS.user_of(token, NOW + timedelta(minutes=29)) == user.id
    assert TOKENS.issued_for(token, user)
    with pytest.raises(PasswordResetInvalid, match="not valid or has expired"):
        TOKENS.user_of(token, NOW + timedelta(minutes=30))


@pytest.mark.parametrize(
    "change",
    [
        {"password_hash": "$argon2id$v=19$two"},  # a reset, or any other password change
        {"password_hash": None},
        {"email": "ada@elsewhere.example"},
    ],
)
def test_a_token_is_no_longer_good_once_the_password_or_address_changed(
    change: dict[str, object],
) -> None:
    user = _user()
    token = TOKENS.issue(user, NOW + timedelta(minutes=30))

    assert not TOKENS.issued_for(token, msgspec.structs.replace(user, **change))


def test_a_token_is_good_for_its_user_only_and_under_its_secret_only() -> None:
    ada, bob = _user(), _user(email="bob@example.com")
    token = TOKENS.issue(ada, NOW + timedelta(minutes=30))
    body, _, mac = token.rpartition(".")

    assert not TOKENS.issued_for(
        token, msgspec.structs.replace(bob, password_hash=ada.password_hash)
    )
    assert not TOKENS.issued_for(f"{bob.id.hex}.{body.split('.')[1]}.{mac}", bob)
    assert not HmacPasswordResetTokens(SECRET + "!").issued_for(token, ada)
    later = f"{ada.id.hex}.{int((NOW + timedelta(days=9)).timestamp())}.{mac}"
    assert not TOKENS.issued_for(later, ada)  # the expiry is signed


@given(st.text(max_size=300))
def test_any_value_is_refused_cleanly_or_read_never_a_crash(value: str) -> None:
    user = _user()
    refused: PasswordResetInvalid | None = None
    try:
        TOKENS.user_of(value, NOW)
    except PasswordResetInvalid as e:
        refused = e
    if refused is not None:  # the one message, never the value
        assert str(refused) == PasswordResetInvalid.default_message
        assert refused.details == {"field": "token"}
    assert TOKENS.issued_for(value, user) is False
