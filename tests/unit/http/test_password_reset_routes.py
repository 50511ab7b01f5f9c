"""Forgotten passwords: /api/auth/password/forgot queues a link by email, /reset uses it once.

Through the HTTP app on the fake container; the worker's side (``SendPasswordResetHandler``)
is run by hand on the queued jobs, its email read from the in-memory outbox.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.jobs import SendPasswordReset

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new and long passphrase"
PROBLEM_JSON = "application/problem+json"
LINK = re.compile(r"^http://localhost:3000/reset-password#token=([A-Za-z0-9_.-]+)$", re.M)


async def _register(client: AsyncTestClient[Litestar], email: str = "ada@example.com") -> Any:
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()


async def _forgot(client: AsyncTestClient[Litestar], email: str) -> Any:
    return await client.post("/api/auth/password/forgot", json={"email": email})


async def _mailed_token(container: FakeContainer) -> str:
    """Run the queued reset jobs as the worker does; the token of the last email sent."""
    jobs = container.jobs.jobs
    assert jobs, "nothing was queued"
    await container.jobs.drain(container.send_password_reset().execute)
    assert container.email is not None
    assert container.email.outbox
    found = LINK.search(container.email.outbox[-1].text)
    assert found is not None, container.email.outbox[-1].text
    return found.group(1)


async def _reset(
    client: AsyncTestClient[Litestar], token: str, password: str = NEW_PASSWORD
) -> Any:
    return await client.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": password}
    )


async def _login(client: AsyncTestClient[Litestar], password: str) -> int:
    response = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": password}
    )
    return response.status_code


async def test_a_mailed_link_sets_a_new_password_signs_in_and_ends_every_other_session(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    old = (await _register(client))["tokens"]

    asked = await _forgot(client, " ADA@Example.com ")
    assert asked.status_code == 202, asked.text
    token = await _mailed_token(container)
    assert container.email is not None
    sent = container.email.outbox[-1]
    assert (sent.to, sent.subject) == ("ada@example.com", "Reset your Whalli password")
    assert "30 minutes" in sent.text

    reset = await _reset(client, token)

    assert reset.status_code == 200, reset.text
    fresh = reset.json()
    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {fresh['accessToken']}"}
    )
    assert me.status_code == 200
    assert me.json()["emailVerified"] is True  # the link reached the mailbox
    assert await _login(client, NEW_PASSWORD) == 200
    assert await _login(client, PASSWORD) == 401
    refreshed = await client.post("/api/auth/refresh", json={"refreshToken": old["refreshToken"]})
    assert refreshed.status_code == 401  # the session from before the reset ended
    again = await _reset(client, token, "yet another long passphrase")
    assert again.status_code == 422  # a link works once
    assert again.json()["code"] == "password_reset_invalid"
    assert await _login(client, NEW_PASSWORD) == 200


async def test_an_unknown_address_gets_the_same_202_and_no_email(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await _register(client)

    known, unknown = (
        await _forgot(client, "ada@example.com"),
        await _forgot(client, "x@example.com"),
    )

    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
    assert known.status_code == 202
    assert [type(job) for job in container.jobs.jobs] == [SendPasswordReset, SendPasswordReset]
    await container.jobs.drain(container.send_password_reset().execute)
    assert container.email is not None
    assert [m.to for m in container.email.outbox] == ["ada@example.com"]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "0" * 32 + ".99999999999.AAAAAAAAAAAAAAAAAAAAAA",
        "a" * 500,
        "a" * 32 + ".1e3.x",
    ],
)
async def test_a_malformed_or_forged_token_is_a_422_and_changes_nothing(
    client: AsyncTestClient[Litestar], token: str
) -> None:
    await _register(client)

    response = await _reset(client, token)

    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert await _login(client, PASSWORD) == 200


async def test_a_token_holding_a_lone_surrogate_is_a_400_problem_not_a_crash(
    client: AsyncTestClient[Litestar],
) -> None:
    body = '{"token": "\\udcff.1.2", "newPassword": "a new and long passphrase"}'
    response = await client.post(
        "/api/auth/password/reset", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["detail"]


async def test_a_token_signed_for_someone_else_or_tampered_is_refused(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await _register(client)
    bob = (await _register(client, "bob@example.com"))["user"]
    await _forgot(client, "ada@example.com")
    token = await _mailed_token(container)
    user_hex, expires, mac = token.split(".")

    for forged in (
        f"{bob['id'].replace('-', '')}.{expires}.{mac}",  # Ada's signature on Bob's id
        f"{user_hex}.{int(expires) + 3600}.{mac}",  # a later expiry
        f"{user_hex}.{expires}.{mac[:-2]}AA",
    ):
        response = await _reset(client, forged)
        assert response.status_code == 422, (forged, response.text)
        assert response.json() == {**response.json(), "code": "password_reset_invalid"}
        assert response.json()["field"] == "token"
    assert await _login(client, PASSWORD) == 200


async def test_a_link_expires_and_dies_when_the_password_changes_another_way(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    tokens = (await _register(client))["tokens"]
    await _forgot(client, "ada@example.com")
    await _forgot(client, "ada@example.com")
    await container.jobs.drain(container.send_password_reset().execute)
    assert container.email is not None
    first, second = (LINK.search(m.text).group(1) for m in container.email.outbox)  # type: ignore[union-attr]

    changed = await client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": "changed by its owner meanwhile"},
        headers={"Authorization": f"Bearer {tokens['accessToken']}"},
    )
    assert changed.status_code == 200, changed.text
    assert (await _reset(client, first)).status_code == 422

    await _forgot(client, "ada@example.com")
    late = await _mailed_token(container)
    container.clock.advance(timedelta(minutes=30))
    expired = await _reset(client, late)
    assert expired.status_code == 422
    assert expired.json()["code"] == "password_reset_invalid"
    assert second != late


async def test_the_new_password_meets_the_sign_up_policy_and_a_refusal_keeps_the_link(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await _register(client)
    await _forgot(client, "ada@example.com")
    token = await _mailed_token(container)

    short = await _reset(client, token, "short")
    common = await _reset(client, token, "Password123")

    assert (short.status_code, short.json()["rule"]) == (422, "min_length")
    assert (common.status_code, common.json()["rule"]) == (422, "common")
    assert await _login(client, PASSWORD) == 200
    assert (await _reset(client, token)).status_code == 200  # still good: nothing was changed


async def test_a_disabled_account_gets_no_email_and_its_link_no_reset(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    user = (await _register(client))["user"]
    await _forgot(client, "ada@example.com")
    token = await _mailed_token(container)
    sent = len(container.email.outbox) if container.email else 0
    async with container.uow() as uow:
        account = await uow.users.get_for_update(uuid.UUID(user["id"]))
        account.disabled = True
        await uow.users.update(account)
        await uow.commit()

    assert (await _reset(client, token)).status_code == 422
    await _forgot(client, "ada@example.com")
    await container.jobs.drain(container.send_password_reset().execute)
    assert container.email is not None
    assert len(container.email.outbox) == sent


async def test_a_request_that_waited_past_a_links_lifetime_sends_nothing(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await _register(client)
    await _forgot(client, "ada@example.com")
    container.clock.advance(timedelta(minutes=31))

    await container.jobs.drain(container.send_password_reset().execute)

    assert container.email is not None
    assert container.email.outbox == []


async def test_without_email_a_reset_request_is_a_422_problem_and_queues_nothing(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await _register(client)
    container.email = None

    response = await _forgot(client, "ada@example.com")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["code"] == "password_reset_not_configured"
    assert container.jobs.jobs == []


async def test_reset_requests_for_one_address_are_limited_whether_it_has_an_account_or_not(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await _register(client)

    answers = [(await _forgot(client, "ADA@example.com")).status_code for _ in range(6)]

    assert answers == [202] * 5 + [429]
    refused = await _forgot(client, "ada@example.com")
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith(PROBLEM_JSON)
    assert int(refused.headers["retry-after"]) > 0
    assert len(container.jobs.jobs) == 5


async def test_a_malformed_address_is_a_422_naming_the_field(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    response = await _forgot(client, "not an address")

    assert response.status_code == 422
    assert response.json()["field"] == "email"
    assert container.jobs.jobs == []
