"""The async connection pool, as a lifecycle resource for the container."""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator
from time import monotonic
from typing import TypeAlias, TypeVar
from weakref import WeakKeyDictionary

import psycopg
from psycopg import AsyncConnection
from psycopg.abc import PQGen
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

PostgresPool: TypeAlias = AsyncConnectionPool[AsyncConnection[TupleRow]]
Connection: TypeAlias = AsyncConnection[TupleRow]
RV = TypeVar("RV")

# How long one exchange with the server (a statement and its results, a commit, a ping) may
# take before the connection is given up as stalled (see ``DeadlineConnection``), and how long
# the cancellation of the statement then may take.
IO_TIMEOUT_S = 30.0
CANCEL_TIMEOUT_S = 2.0
_WAIT_INTERVAL = 0.1  # psycopg's own
# What psycopg raises when a wait's timeout expires (a private class; any OperationalError if
# a later version drops it: a connection failing so is closed all the same).
_WAIT_TIMEOUT: type[psycopg.OperationalError] = getattr(
    psycopg.errors, "_WaitTimeout", psycopg.OperationalError
)
# psycopg parses a query's ``%(name)s`` placeholders once per query text and caches the result,
# but only for queries of at most ``MAX_CACHED_STATEMENT_PARAMS`` (50) parameters. A new chat is
# written by one statement of 55 (the chat and its first two messages), which was parsed again on
# every start: 84 µs of CPU each time. Our statements are fixed texts, so the cache (an
# ``lru_cache`` of 128 entries) stays small whatever their size. (A private module: a psycopg
# without it keeps its own limit.)
_MOST_CACHED_PARAMS = 256
if (
    getattr(psycopg._queries, "MAX_CACHED_STATEMENT_PARAMS", _MOST_CACHED_PARAMS)
    < _MOST_CACHED_PARAMS
):
    psycopg._queries.MAX_CACHED_STATEMENT_PARAMS = _MOST_CACHED_PARAMS


class DeadlineConnection(AsyncConnection[TupleRow]):
    """A connection whose every exchange with the server has a deadline (``io_timeout``).

    A server that stops answering without closing the connection (a network cut leaving it
    half open, a frozen host) would otherwise hold a request, or a reply's final write, for
    ever: the operation fails instead (``psycopg.OperationalError``, which the repositories
    report as ``ServiceUnavailable``). Its statement is cancelled first (for up to
    ``CANCEL_TIMEOUT_S``: a statement merely waiting, on a lock say, must not go on and
    commit after its caller was told it failed), then the connection is closed, never reused.
    The server-side ``statement_timeout`` cannot do this: it needs the server to answer."""

    io_timeout: float = IO_TIMEOUT_S

    async def wait(
        self,
        gen: PQGen[RV],
        interval: float = _WAIT_INTERVAL,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> RV:
        try:
            return await super().wait(
                gen, interval, self.io_timeout if timeout is None else timeout
            )
        except _WAIT_TIMEOUT:
            await self._give_up()
            raise

    async def _give_up(self) -> None:
        with contextlib.suppress(Exception):
            await self.cancel_safe(timeout=CANCEL_TIMEOUT_S)
        self.pgconn.finish()  # closed at once: no exchange that could hang again


def _deadline_class(io_timeout: float) -> type[DeadlineConnection]:
    return type("DeadlineConnection", (DeadlineConnection,), {"io_timeout": io_timeout})


# A connection handed out less than this long ago is not pinged again (see ``LivenessCheck``).
PING_AFTER_IDLE = 1.0


def _has_unread_input(conn: Connection) -> bool:
    """True when the server wrote to this idle connection: in practice the notice that it ends
    the session (a restart, ``pg_terminate_backend``) followed by the end of the stream.

    A zero-timeout poll of the socket: a system call, no round trip.
    """
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True  # cannot tell: let the ping decide


class LivenessCheck:
    """The pool's ``check``: runs on every checkout and refuses a connection that cannot serve.

    Pinging on every checkout costs a round trip per use case. Instead:

    - a connection that is closed, broken, not idle or left in autocommit mode is closed and
      refused, without a round trip;
    - a connection the server wrote to while it sat in the pool (a restart or a terminated
      session sends a notice and closes the socket) is pinged, which fails if it is dead;
    - a connection not handed out for more than ``ping_after_idle`` seconds (or never yet) is
      pinged, which catches a peer that vanished silently (a network cut, a failover);
    - any other connection, in use moments ago and silent since, is handed out as it is.

    A failed check makes the pool discard the connection and try the next one.
    """

    def __init__(
        self, ping_after_idle: float = PING_AFTER_IDLE, ping_timeout: float | None = None
    ) -> None:
        """``ping_timeout``: how long a ping may take (a stalled server: the connection is
        refused then), so a checkout is bounded by the pool's acquire timeout, not by a
        connection's I/O deadline."""
        self._ping_after_idle = ping_after_idle
        self._ping_timeout = ping_timeout
        self._handed_out_at: WeakKeyDictionary[Connection, float] = WeakKeyDictionary()

    async def __call__(self, conn: Connection) -> None:
        pgconn = conn.pgconn
        if (
            conn.closed
            or conn.broken
            or pgconn.status != ConnStatus.OK
            or pgconn.transaction_status != TransactionStatus.IDLE
            or conn.autocommit  # units of work rely on rollback by default
        ):
            await conn.close()  # so the pool replaces it rather than resetting it
            raise psycopg.OperationalError("the connection is closed, not idle or in autocommit")
        now = monotonic()
        last = self._handed_out_at.get(conn)
        if last is None or now - last > self._ping_after_idle or _has_unread_input(conn):
            await self._ping(conn)
        self._handed_out_at[conn] = now

    async def _ping(self, conn: Connection) -> None:
        if self._ping_timeout is None or not isinstance(conn, DeadlineConnection):
            await AsyncConnectionPool.check_connection(conn)
            return
        conn.io_timeout = min(self._ping_timeout, conn.io_timeout)  # this connection's, for now
        try:
            await AsyncConnectionPool.check_connection(conn)
        finally:
            del conn.io_timeout  # its class's again


RECONNECT_TIMEOUT_S = 5.0


async def create_pool(
    url: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    acquire_timeout: float = 10.0,
    ping_after_idle: float = PING_AFTER_IDLE,
    io_timeout: float = IO_TIMEOUT_S,
) -> AsyncIterator[PostgresPool]:
    """Yield an opened pool and close it on exit (a dependency-injector ``Resource``).

    The pool opens without waiting for its first connection, so the application starts (and
    reports "not ready") while Postgres is down; ``acquire_timeout`` bounds how long a caller
    waits for a connection, ``io_timeout`` how long one exchange with the server may take
    (``DeadlineConnection``). Sessions run in UTC so timestamps read back as UTC.
    """
    pool: PostgresPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=acquire_timeout,
        connection_class=_deadline_class(io_timeout),
        # A connection that cannot be made is retried with a growing delay (1, 2, 4 s, ...),
        # which after a long outage would leave requests failing long after Postgres is back.
        # Given up after a few seconds instead: the next request asking for a connection then
        # makes one at once.
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        kwargs={"options": "-c TimeZone=UTC", "connect_timeout": 5, "application_name": "whalli"},
        # A connection broken by a server restart is noticed before a use case gets it, without
        # a ping round trip on every checkout.
        check=LivenessCheck(ping_after_idle, ping_timeout=acquire_timeout),
        name="whalli",
    )
    await pool.open(wait=False)
    try:
        yield pool
    finally:
        await pool.close()
