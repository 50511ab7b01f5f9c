"""Hunt (s31): a sign-in racing a change that ends every session (a password change or reset,
an admin disabling the account) on the real app (uvicorn, Postgres, Redis, S3).

The change's transaction is played by a connection of the test's own: it holds the account as
a password change does (``FOR NO KEY UPDATE``), the sign-in is sent and must wait for it (read
from ``pg_blocking_pids``), then the connection stores a new hash, revokes every session and
commits. A sign-in that did not wait would open its session from what it read before, and keep
it past the change; one that waits reads the change and is refused. No sleep decides it.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.integration.http.test_s31_hunt_races import Held


async def test_a_sign_in_racing_a_password_change_never_keeps_a_session_past_it(
    chat: Chat, migrated_database_url: str
) -> None:
    ada = await chat.world.register("ada")
    user_id = uuid.UUID(ada["user"]["id"])
    login = {"email": ada["email"], "password": PASSWORD}

    conn = await psycopg.AsyncConnection.connect(migrated_database_url)
    async with conn:
        async with conn.transaction():
            await conn.execute(
                "SELECT 1 FROM users WHERE id = %(id)s FOR NO KEY UPDATE", {"id": user_id}
            )
            signing_in = asyncio.ensure_future(chat.client.post("/api/auth/login", json=login))
            await Held(migrated_database_url, conn.info.backend_pid).waited_by(1)
            await conn.execute(
                "UPDATE users SET password_hash = 'changed elsewhere' WHERE id = %(id)s",
                {"id": user_id},
            )
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE user_id = %(id)s AND revoked_at IS NULL",
                {"id": user_id},
            )
        answer = await signing_in
        live = await (
            await conn.execute(
                "SELECT count(*) FROM refresh_tokens WHERE user_id = %(id)s AND revoked_at IS NULL",
                {"id": user_id},
            )
        ).fetchone()

    assert answer.status_code == 401, answer.text
    assert live == (0,)
