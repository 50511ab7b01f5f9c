"""Forgotten passwords under attack (s31 hunt): through the HTTP app on the fake container, the
worker's side (``SendPasswordResetHandler``) run by hand on the queued jobs."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import seed_api_key
from tests.unit.http.fakes import FakeContainer
from tests.unit.http.test_password_reset_routes import _forgot, _mailed_token, _reset
from whalli.domain.model.jobs import SendPasswordReset
from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName
from whalli.domain.services.auth.send_password_reset import SendPasswordResetHandler


async def test_a_web_url_with_a_query_keeps_it_and_the_reset_page_goes_on_its_path(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    await seed_api_key(container, "ada")
    sent = SendPasswordResetHandler(
        container.uow(), container.reset_tokens, container.email, container.clock,
        web_url="https://app.example/whalli/?tenant=acme", ttl=timedelta(minutes=30),
    )  # fmt: skip

    await sent.execute(
        SendPasswordReset(email="ada@example.com", requested_at=container.clock.now())
    )

    assert container.email is not None
    [link] = [line for line in container.email.outbox[-1].text.splitlines() if "#token=" in line]
    assert link.startswith("https://app.example/whalli/reset-password?tenant=acme#token="), link


async def test_a_reset_that_proves_the_mailbox_first_ends_the_keys_and_links_someone_else_made(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    # Someone signed up with Ada's address before she did (nothing checked the mailbox), made
    # an API key and linked their own provider account; Ada then resets the password.
    squatted, key = await seed_api_key(container, "ada")
    async with container.uow() as uow:
        await uow.oauth_identities.add(
            OAuthIdentity(
                provider=OAuthProviderName.GITHUB, subject="mallory", user_id=squatted.id,
                email="mallory@example.com", created_at=container.clock.now(),
            )
        )  # fmt: skip
        await uow.commit()
    await _forgot(client, "ada@example.com")

    reset = await _reset(client, await _mailed_token(container))

    assert reset.status_code == 200, reset.text
    by_key = await client.get("/api/auth/me", headers={"X-API-Key": key})
    assert by_key.status_code == 401
    async with container.uow() as uow:
        assert await uow.oauth_identities.list_for_user(squatted.id) == []


async def test_a_reset_of_a_verified_account_keeps_its_api_keys_and_links(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    bob, key = await seed_api_key(container, "bob")
    async with container.uow() as uow:
        account = await uow.users.get_for_update(bob.id)
        account.email_verified = True
        await uow.users.update(account)
        await uow.oauth_identities.add(
            OAuthIdentity(
                provider=OAuthProviderName.GOOGLE, subject="bob", user_id=bob.id,
                email="bob@example.com", created_at=container.clock.now(),
            )
        )  # fmt: skip
        await uow.commit()
    await _forgot(client, "bob@example.com")

    reset = await _reset(client, await _mailed_token(container))

    assert reset.status_code == 200, reset.text
    assert (await client.get("/api/auth/me", headers={"X-API-Key": key})).status_code == 200
    async with container.uow() as uow:
        assert len(await uow.oauth_identities.list_for_user(bob.id)) == 1
