"""Hunt (s31): an OAuth sign-in racing a change that ends every session of its account (an
admin disabling it, a password reset) on Postgres and Redis.

The change's transaction is played by a connection of the test's own, holding the account as
such a change does (``FOR NO KEY UPDATE``); the callback must wait for it (read from
``pg_blocking_pids``); the connection then disables the account, revokes every session and
commits. A sign-in that did not wait would open its session from what it read before and keep
it past the change; one that waits reads the change and is refused. No sleep decides it.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_s31_hunt_races import Held
from tests.integration.test_oauth import (  # noqa: F401  (fixtures)
    AttemptRunner,
    Providers,
    Stack,
    http,
    issuer,
    providers,
    redis_client,
    server,
)
from tests.support.oauth_server import FakeOAuthServer, GoogleAccount
from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.redis.cache import RedisCache
from whalli.domain.model.errors import OAuthFailed
from whalli.domain.model.oauth import OAuthProviderName


async def test_an_oauth_sign_in_racing_a_disabling_never_keeps_a_session_past_it(
    pg_pool: PostgresPool,
    redis_client: Redis,  # noqa: F811
    migrated_database_url: str,
    server: FakeOAuthServer,  # noqa: F811
    providers: Providers,  # noqa: F811
    http: object,  # noqa: F811
    issuer: JwtAccessTokenIssuer,  # noqa: F811
    unique: str,
) -> None:
    stack = Stack(lambda: PostgresUnitOfWork(pg_pool), RedisCache(redis_client, f"t:{unique}:"))
    flow = AttemptRunner(stack, http, issuer)  # type: ignore[arg-type]
    google = providers[OAuthProviderName.GOOGLE]
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"ada-{unique}@example.com")
    first = await flow.sign_in(google)  # the account and its link
    user_id = issuer.verify(first.access_token).subject
    attempt = await flow.begin(google)

    conn = await psycopg.AsyncConnection.connect(migrated_database_url)
    async with conn:
        async with conn.transaction():
            await conn.execute(
                "SELECT 1 FROM users WHERE id = %(id)s FOR NO KEY UPDATE", {"id": user_id}
            )
            signing_in = asyncio.ensure_future(flow.complete.execute(google, attempt.callback()))
            await Held(migrated_database_url, conn.info.backend_pid).waited_by(1)
            await conn.execute(
                "UPDATE users SET disabled = true WHERE id = %(id)s", {"id": user_id}
            )
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE user_id = %(id)s AND revoked_at IS NULL",
                {"id": user_id},
            )
        with pytest.raises(OAuthFailed, match="disabled"):
            await signing_in
        live = await (
            await conn.execute(
                "SELECT count(*) FROM refresh_tokens WHERE user_id = %(id)s AND revoked_at IS NULL",
                {"id": user_id},
            )
        ).fetchone()

    assert live == (0,)
