"""Password reset tokens (``HmacPasswordResetTokens``): signed for one account as it is, once;
and what every mailed link (``HmacAccountLinks``) is bound to."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.crypto.account_links import HmacAccountLinks
from whalli.adapters.crypto.email_verifications import HmacEmailVerificationTokens
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
        {"updated_at": NOW + timedelta(microseconds=1)},  # any other change of the account
    ],
)
def test_a_token_is_no_longer_good_once_the_password_address_or_account_changed(
    change: dict[str, object],
) -> None:
    user = _user()
    token = TOKENS.issue(user, NOW + timedelta(minutes=30))

    assert not TOKENS.issued_for(token, msgspec.structs.replace(user, **change))


@pytest.mark.parametrize(
    "tokens", [TOKENS, HmacEmailVerificationTokens(SECRET)], ids=["reset", "verification"]
)
def test_a_link_sent_before_a_disabling_is_not_good_once_enabled_again(
    tokens: HmacAccountLinks,
) -> None:
    user = _user()
    token = tokens.issue(user, NOW + timedelta(minutes=30))
    disabled = msgspec.structs.replace(user, disabled=True, updated_at=NOW + timedelta(minutes=1))
    enabled = msgspec.structs.replace(
        disabled, disabled=False, updated_at=NOW + timedelta(minutes=2)
    )

    assert tokens.issued_for(token, user)
    assert not tokens.issued_for(token, enabled)  # the address and password are as they were


def test_the_account_s_last_change_is_compared_as_an_instant_whatever_its_time_zone() -> None:
    user = _user(updated_at=datetime(2026, 3, 1, 12, 0, 0, 123_456, tzinfo=UTC))
    token = TOKENS.issue(user, NOW + timedelta(minutes=30))
    lisbon_summer = timezone(timedelta(hours=1))
    read_back = msgspec.structs.replace(user, updated_at=user.updated_at.astimezone(lisbon_summer))

    assert TOKENS.issued_for(token, read_back)


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
