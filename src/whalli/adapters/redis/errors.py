"""Translation of redis-py errors into domain errors, without leaking the URL or password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as rx

from whalli.domain.model.errors import ServiceUnavailable


def _reason(error: BaseException) -> str:
    # Only fixed wording: redis-py messages name the host and port, and a misconfigured URL may
    # end up in them, so none of the driver's text is copied into the domain error.
    if isinstance(error, rx.AuthenticationError | rx.AuthorizationError):
        return "authentication failed"
    if isinstance(error, rx.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(error, rx.BusyLoadingError):
        return "still loading its data"
    if isinstance(error, rx.ConnectionError | OSError):
        return "connection failed"
    if isinstance(error, rx.ReadOnlyError):
        return "read-only replica"
    if isinstance(error, rx.OutOfMemoryError):
        return "out of memory"
    return f"command failed ({type(error).__name__})"


def unavailable(error: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"redis: {_reason(error)}")


# what a Redis client raises when the server cannot serve: each is ``unavailable``
FAILURES = (rx.RedisError, OSError, TimeoutError)


@contextmanager
def translated() -> Iterator[None]:
    """Raise ``ServiceUnavailable`` for any Redis failure inside the block."""
    try:
        yield
    except FAILURES as e:
        raise unavailable(e) from e
