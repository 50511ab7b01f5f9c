"""Small helpers shared by the Redis adapters."""

from __future__ import annotations


def as_bytes(value: bytes | str | None) -> bytes | None:
    # The client is built without decode_responses, so values are bytes; a str would only come
    # from a client configured otherwise, and is turned back into bytes rather than leaked.
    if value is None or isinstance(value, bytes):
        return value
    return value.encode()


def check_ttl(ttl_seconds: int) -> None:
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
