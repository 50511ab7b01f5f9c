"""``CredentialVersions`` on Redis: one string per user, ``{prefix}{user_id}``, holding a random
token; through the lean multiplexed client, so that a read sent just after the rate limit's
count travels in the same round trip.

A read gives a user without a version one first (``SET NX``, then ``GET``, written together:
one round trip), so a version is never "none": a store that lost its data (a restart, an
eviction) hands out new versions, which match nothing a process remembers."""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import Any
from uuid import UUID

from whalli.adapters.redis.errors import FAILURES, translated, unavailable
from whalli.adapters.redis.resp import RespClient
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.credential_versions import CredentialVersions

# How long a version is kept after its last bump. A forgotten version reads as ``None``, which
# a reader remembering a token sees as a change (it reads the database again): nothing is
# ever trusted because a version was forgotten.
VERSION_TTL_S = 24 * 3600


class RedisCredentialVersions(CredentialVersions):
    def __init__(self, lean: RespClient, prefix: str = "whalli:credver:") -> None:
        self._lean, self._prefix = lean, prefix

    def current(self, user_id: UUID) -> asyncio.Future[bytes | None]:
        """The read is written before this returns when the connection is open (else a task
        opens it); the future gives its answer, or ``ServiceUnavailable``."""
        key = self._prefix + str(user_id)
        given = ("SET", key, secrets.token_hex(8), "NX", "EX", VERSION_TTL_S)
        read = ("GET", key)
        sent: asyncio.Future[Any] | None = self._lean.send_last_now(given, read)
        if sent is None:
            sent = asyncio.ensure_future(self._lean.execute_last(given, read))
        answer: asyncio.Future[bytes | None] = sent.get_loop().create_future()
        sent.add_done_callback(functools.partial(_settle, answer))
        return answer

    async def bump(self, user_id: UUID) -> None:
        token = secrets.token_hex(8)
        key = self._prefix + str(user_id)
        with translated():
            await self._lean.execute("SET", key, token, "EX", VERSION_TTL_S)


def _settle(answer: asyncio.Future[bytes | None], sent: asyncio.Future[Any]) -> None:
    if answer.done():
        return
    if sent.cancelled():
        answer.cancel()
        return
    error = sent.exception()
    value = None if error is not None else sent.result()
    if error is not None:
        failure = error if isinstance(error, FAILURES) else RuntimeError(type(error).__name__)
        answer.set_exception(unavailable(failure))
    elif value is None or isinstance(value, bytes):
        answer.set_result(value)
    else:  # an error reply, or not a string: not a version this adapter wrote
        answer.set_exception(ServiceUnavailable("redis: a credential version was not a string"))
