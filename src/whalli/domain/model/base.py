"""Shared building blocks for entities: time helpers and the Struct base."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec


class Entity(msgspec.Struct, kw_only=True):
    """Base for mutable domain entities (msgspec Structs; invariants live in factories/methods)."""


class Value(msgspec.Struct, frozen=True, kw_only=True):
    """Base for immutable value objects."""


def utc(dt: datetime) -> datetime:
    """Reject naive datetimes: every time in the domain is aware and in UTC."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(UTC)
