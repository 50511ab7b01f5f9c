"""msgspec base classes for the HTTP API: camelCase on the wire, unset defaults left out."""

from __future__ import annotations

import msgspec


def camel_name(name: str) -> str:
    """The wire name ``Schema`` gives a field (``top_p`` is ``topP``)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Schema(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base of every response (and, through :class:`Inbound`, request) schema."""


class Inbound(Schema, forbid_unknown_fields=True):
    """Base of request bodies: a misspelt field is a 400, not silently ignored."""


class HealthStatus(Schema):
    status: str
