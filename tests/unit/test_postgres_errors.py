"""How driver errors read as domain errors (adapters/postgres/_base.translated)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from whalli.adapters.postgres._base import translated
from whalli.domain.model.errors import ServiceUnavailable


@pytest.mark.parametrize("error", [errors.DeadlockDetected, errors.SerializationFailure])
def test_a_transaction_that_lost_a_race_is_retryable_and_says_so(
    error: type[psycopg.Error],
) -> None:
    expected = pytest.raises(ServiceUnavailable, match="collided with another one")
    with expected as raised, translated():
        raise error("deadlock detected: process 1 waits for ShareLock")
    assert "process" not in str(raised.value)  # no server detail in what callers see


def test_a_database_that_does_not_answer_is_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match="database is unavailable"), translated():
        raise psycopg.OperationalError("connection refused at 10.0.0.5")
