"""When something a user makes stops working by itself (API keys, shared links)."""

from __future__ import annotations

from datetime import datetime, timedelta

from whalli.domain.model.errors import InvalidInput

FIELD = "expiresAt"


def check_expiry(expires_at: datetime | None, now: datetime, longest: timedelta, what: str) -> None:
    """Refuse an expiry without a UTC offset, not in the future, or further than ``longest``
    (``what`` names the thing in the message; ``None``: it lasts until revoked)."""
    if expires_at is None:
        return
    if expires_at.utcoffset() is None:
        raise InvalidInput(
            "The expiry needs a UTC offset (like 2031-01-01T00:00:00Z).", field=FIELD
        )
    if expires_at <= now:
        raise InvalidInput("The expiry must be in the future.", field=FIELD)
    if expires_at - now > longest:
        years = longest.days // 365
        span = f"{years} years" if years > 1 else f"{longest.days} days"
        raise InvalidInput(
            f"The expiry can be at most {span} away "
            f"(or none: {what} without expiry lasts until revoked).",
            field=FIELD,
        )


def in_force(expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> bool:
    """Not revoked, and not expired at ``now``."""
    return revoked_at is None and (expires_at is None or now < expires_at)
