"""The watch over the credential a long answer began with (``CredentialWatch``): a look at most
every ``every_s``, the database read only when the user's credential version changed."""

from __future__ import annotations

import pytest

from tests.unit.identity.test_principal_cache import _CountedReads, _key, _reads
from tests.unit.services.test_auth import Auth
from whalli.adapters.memory.credential_versions import InMemoryCredentialVersions
from whalli.domain.model.api_keys import API_KEY_PREFIX
from whalli.domain.model.principal import CredentialId
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKey, RevokeApiKeyHandler
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.credential_watch import CredentialWatch


@pytest.fixture
def auth() -> Auth:
    _CountedReads.reads = 0
    return Auth()


async def test_a_watch_looks_at_its_rate_reads_only_on_a_new_version_and_sees_a_revoked_key(
    auth: Auth,
) -> None:
    user, _ = await auth.register()
    key = await _key(auth, user, API_KEY_PREFIX + "w" * 43)
    versions, now = InMemoryCredentialVersions(), [0.0]
    watch = CredentialWatch(
        _CountedReads(auth.store), auth.clock, versions, every_s=1.0, monotonic=lambda: now[0]
    )
    check = watch.watch(user.id, CredentialId(api_key_id=key.id))
    assert check is not None

    async def at(t: float) -> tuple[bool, int]:
        now[0] = t
        return await check.ended(), _reads()

    assert await at(0.5) == (False, 0)  # too soon: no look
    assert await at(1.0) == (False, 1)  # the first look reads the database
    assert await at(2.0) == (False, 1)  # the same version: nothing read
    revoke = RevokeApiKeyHandler(auth.uow(), auth.clock, access=AccessChanges(versions))
    await revoke.execute(RevokeApiKey(user_id=user.id, key_id=key.id))
    assert await at(2.5) == (False, 1)  # not before its next look
    assert await at(3.0) == (True, 2)


def test_a_credential_not_known_is_not_watched(auth: Auth) -> None:
    watch = CredentialWatch(auth.uow(), auth.clock)
    assert watch.watch(auth.ids.new_id(), CredentialId()) is None
