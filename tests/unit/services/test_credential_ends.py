"""The users this process ended a credential of just now, as a read-free check asks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from whalli.domain.services.auth.credential_ends import REMEMBERED_FOR, CredentialEnds
from whalli.domain.services.chat.attach_stream import START_READ_GRACE

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def test_an_end_is_remembered_at_least_as_long_as_the_start_read_is_relied_on() -> None:
    assert REMEMBERED_FOR >= START_READ_GRACE


def test_an_end_concerns_reads_made_until_it_and_only_its_user() -> None:
    ends, ada, bob = CredentialEnds(), uuid.uuid4(), uuid.uuid4()
    ends.ended(ada, T0)

    assert ends.ended_since(ada, T0 - MS)
    assert ends.ended_since(ada, T0)
    assert not ends.ended_since(ada, T0 + MS)  # read after it: the read saw it
    assert not ends.ended_since(bob, T0 - MS)


def test_a_later_end_of_the_same_user_is_kept_an_earlier_one_does_not_replace_it() -> None:
    ends, ada = CredentialEnds(), uuid.uuid4()
    ends.ended(ada, T0 + timedelta(seconds=1))
    ends.ended(ada, T0)

    assert ends.ended_since(ada, T0 + timedelta(seconds=1))


def test_old_ends_are_dropped_as_new_ones_come() -> None:
    ends, ada, bob = CredentialEnds(timedelta(seconds=2)), uuid.uuid4(), uuid.uuid4()
    ends.ended(ada, T0)
    ends.ended(bob, T0 + timedelta(seconds=3))

    assert not ends.ended_since(ada, T0 - MS)  # past what anyone relies on: forgotten
    assert ends.ended_since(bob, T0)


def test_an_end_forgotten_early_makes_every_earlier_read_suspect() -> None:
    ends, users = CredentialEnds(size=2), [uuid.uuid4() for _ in range(3)]
    for i, user in enumerate(users):
        ends.ended(user, T0 + i * MS)

    assert ends.ended_since(users[0], T0)  # forgotten, yet still answered yes
    assert ends.ended_since(uuid.uuid4(), T0)  # anyone read before it: read again
    assert not ends.ended_since(uuid.uuid4(), T0 + MS)  # read after it: nothing to fear


def test_the_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CredentialEnds(size=0)
