"""Deleting an account without a password (made by an OAuth sign-in) takes a sign-in of the
last ten minutes, not only the typed address, which any stolen access token can read
(``GET /api/auth/me``). Real app and container (Postgres, Redis) and the loopback OAuth
server playing Google; a session is aged by moving its sign-in back in the database."""

from __future__ import annotations

import uuid

import psycopg

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_s23_hunt_newcode import (
    bearer,
    local_part,
    oauth_chat,
    oauth_sign_in,
)
from tests.support.oauth_server import FakeOAuthServer, GoogleAccount

__all__ = ["oauth_chat"]  # the fixture (oauth_server: the package conftest's)


async def _signed_in(chat: Chat) -> tuple[dict[str, str], str]:
    signed_in = await oauth_sign_in(chat, "google")
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    return bearer(tokens["accessToken"]), tokens["refreshToken"]


async def _age_sessions(database_url: str, email: str, minutes: int) -> None:
    """Move every sign-in of the account ``minutes`` back (test set-up, not the code under test)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE refresh_tokens SET created_at = created_at - make_interval(mins => %s) "
            "WHERE user_id = (SELECT id FROM users WHERE email = %s)",
            (minutes, email),
        )


async def test_an_old_sign_in_must_be_renewed_to_delete_an_account_without_a_password(
    oauth_chat: Chat, oauth_server: FakeOAuthServer, migrated_database_url: str
) -> None:
    chat = oauth_chat
    email = f"{local_part('reauth')}@example.com"
    oauth_server.google_account = GoogleAccount(sub=f"g-{uuid.uuid4().hex}", email=email)
    old_auth, _ = await _signed_in(chat)
    await _age_sessions(migrated_database_url, email, 11)

    refused = await chat.client.request(
        "DELETE", "/api/auth/me", json={"email": email}, headers=old_auth
    )

    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "reauthentication_required"
    assert "sign in again" in refused.json()["detail"]
    me = await chat.client.get("/api/auth/me", headers=old_auth)
    assert me.status_code == 200  # nothing deleted

    fresh_auth, _ = await _signed_in(chat)  # the provider again
    deleted = await chat.client.request(
        "DELETE", "/api/auth/me", json={"email": email}, headers=fresh_auth
    )

    assert deleted.status_code == 204, deleted.text
    assert (await chat.client.get("/api/auth/me", headers=fresh_auth)).status_code == 401


async def test_a_refreshed_session_is_as_old_as_its_sign_in(
    oauth_chat: Chat, oauth_server: FakeOAuthServer, migrated_database_url: str
) -> None:
    chat = oauth_chat
    email = f"{local_part('refreshed')}@example.com"
    oauth_server.google_account = GoogleAccount(sub=f"g-{uuid.uuid4().hex}", email=email)
    _, refresh = await _signed_in(chat)
    await _age_sessions(migrated_database_url, email, 11)
    renewed = await chat.client.post("/api/auth/refresh", json={"refreshToken": refresh})
    assert renewed.status_code == 200, renewed.text

    refused = await chat.client.request(
        "DELETE", "/api/auth/me", json={"email": email},
        headers=bearer(renewed.json()["accessToken"]),
    )  # fmt: skip

    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "reauthentication_required"
