"""Every use case that ends a credential notes it in ``CredentialEnds`` at the clock's time
after its commit (``AccessChanges.ended``): a start that read the user while the end waited to
commit (a lock wait, the transaction's time) read it before the end, and is not trusted without
a new read. The end is noted before the bump that tells the other processes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from tests.unit.services.test_auth import PASSWORD, REFRESH_TTL, Auth
from tests.unit.services.test_change_password import NEW_PASSWORD
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.credential_versions import InMemoryCredentialVersions
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.errors import RefreshTokenReused, ServiceUnavailable
from whalli.domain.model.users import User
from whalli.domain.services.admin.update_user import UpdateUser, UpdateUserHandler
from whalli.domain.services.api_keys.create_api_key import CreateApiKey, CreateApiKeyHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKey, RevokeApiKeyHandler
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.change_password import ChangePassword, ChangePasswordHandler
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.auth.delete_account import DeleteAccount, DeleteAccountHandler
from whalli.domain.services.auth.logout import Logout, LogoutHandler
from whalli.domain.services.auth.logout_all import LogoutAll, LogoutAllHandler
from whalli.domain.services.auth.refresh_session import RefreshSession, RefreshSessionHandler

MS = timedelta(milliseconds=1)


class SlowCommit(InMemoryUnitOfWork):
    """A unit of work whose commit takes 1 ms; ``read_at`` is when a start read the user
    meanwhile, the end not yet committed (so the start saw the credential in force)."""

    def __init__(self, store: MemoryStore, clock: ManualClock) -> None:
        super().__init__(store)
        self._clock = clock
        self.read_at: datetime | None = None

    async def commit(self) -> None:
        self._clock.advance(MS)
        self.read_at = self._clock.now()
        await super().commit()


class SeenAtBumps(InMemoryCredentialVersions):
    """Credential versions that record, at each bump, whether ``ends`` had the end already."""

    def __init__(self, ends: CredentialEnds, uow: SlowCommit) -> None:
        super().__init__()
        self._ends, self._uow = ends, uow
        self.noted_at_bumps: list[bool] = []

    async def bump(self, user_id: uuid.UUID) -> None:
        read_at = self._uow.read_at
        self.noted_at_bumps.append(read_at is not None and self._ends.ended_since(user_id, read_at))
        await super().bump(user_id)


Ending = Callable[[Auth, User, SlowCommit, AccessChanges], Awaitable[object]]


async def _logout(auth: Auth, user: User, uow: SlowCommit, access: AccessChanges) -> object:
    pair = await auth.login()
    handler = LogoutHandler(uow, clock=auth.clock, access=access)
    return await handler.execute(Logout(refresh_token=pair.refresh_token))


async def _logout_all(auth: Auth, user: User, uow: SlowCommit, access: AccessChanges) -> object:
    return await LogoutAllHandler(uow, clock=auth.clock, access=access).execute(
        LogoutAll(user_id=user.id)
    )


async def _change_password(
    auth: Auth, user: User, uow: SlowCommit, access: AccessChanges
) -> object:
    handler = ChangePasswordHandler(
        uow, hasher=auth.hasher, screen=auth.screen, issuer=auth.issuer, clock=auth.clock,
        ids=auth.ids, refresh_ttl=REFRESH_TTL, access=access,
    )  # fmt: skip
    return await handler.execute(
        ChangePassword(user_id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD)
    )


async def _reused(auth: Auth, user: User, uow: SlowCommit, access: AccessChanges) -> object:
    pair = await auth.login()
    await auth.refresh(pair.refresh_token)
    handler = RefreshSessionHandler(
        uow, issuer=auth.issuer, clock=auth.clock, ids=auth.ids, access=access
    )
    with pytest.raises(RefreshTokenReused, match="invalid or has expired"):
        await handler.execute(RefreshSession(refresh_token=pair.refresh_token))
    return None


async def _revoke_key(auth: Auth, user: User, uow: SlowCommit, access: AccessChanges) -> object:
    made = await CreateApiKeyHandler(auth.uow(), auth.clock, auth.ids).execute(
        CreateApiKey(user_id=user.id, name="laptop")
    )
    return await RevokeApiKeyHandler(uow, auth.clock, access=access).execute(
        RevokeApiKey(user_id=user.id, key_id=made.key.id)
    )


async def _disable(auth: Auth, user: User, uow: SlowCommit, access: AccessChanges) -> object:
    admin = await auth.create_user("root@example.com", admin=True)
    return await UpdateUserHandler(uow, auth.clock, access=access).execute(
        UpdateUser(admin_id=admin.id, user_id=user.id, disabled=True)
    )


async def _delete(auth: Auth, user: User, uow: SlowCommit, access: AccessChanges) -> object:
    handler = DeleteAccountHandler(
        uow, InMemoryBlobStorage(), hasher=auth.hasher, clock=auth.clock, access=access
    )
    return await handler.execute(DeleteAccount(user_id=user.id, password=PASSWORD))


ENDINGS: dict[str, Ending] = {
    "logout": _logout,
    "logout everywhere": _logout_all,
    "password change": _change_password,
    "refresh token reused": _reused,
    "key revoked": _revoke_key,
    "account disabled": _disable,
    "account deleted": _delete,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_an_end_is_noted_after_its_commit_so_a_read_made_while_it_committed_is_not_trusted(
    ending: str,
) -> None:
    auth = Auth()
    user, _pair = await auth.register()
    ends, uow = CredentialEnds(), SlowCommit(auth.store, auth.clock)
    versions = SeenAtBumps(ends, uow)
    access = AccessChanges(versions, ends=ends, clock=auth.clock)

    await ENDINGS[ending](auth, user, uow, access)

    assert uow.read_at is not None
    assert ends.ended_since(user.id, uow.read_at)  # read before the end committed: read again
    assert not ends.ended_since(user.id, auth.clock.now() + MS)  # a read after it stands
    assert not ends.ended_since(uuid.uuid4(), uow.read_at)
    assert versions.noted_at_bumps[-1]  # told the other processes once noted here


class Holding(SlowCommit):
    """``SlowCommit`` that knows whether a use case is inside it (holding its connection)."""

    def __init__(self, store: MemoryStore, clock: ManualClock) -> None:
        super().__init__(store, clock)
        self.inside = False
        self.committed = False

    async def __aenter__(self) -> Holding:
        self.inside, self.committed = True, False
        return await super().__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        self.inside = False
        await super().__aexit__(*exc)  # type: ignore[arg-type]

    async def commit(self) -> None:
        await super().commit()
        self.committed = True


class BlinkingVersions(InMemoryCredentialVersions):
    """A store that refuses the first two bumps after a commit (a blip: the bump is retried
    after pauses), recording at each whether the use case still held its unit of work."""

    def __init__(self, uow: Holding) -> None:
        super().__init__()
        self._uow = uow
        self.held_at_retried_bumps: list[bool] = []
        self._refused = 0

    async def bump(self, user_id: uuid.UUID) -> None:
        if self._uow.committed and self._refused < 2:
            self._refused += 1
            self.held_at_retried_bumps.append(self._uow.inside)
            raise ServiceUnavailable("The credential store is unreachable.")
        await super().bump(user_id)


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_a_bump_retried_after_the_commit_holds_no_connection(ending: str) -> None:
    auth = Auth()
    user, _pair = await auth.register()
    uow = Holding(auth.store, auth.clock)
    versions = BlinkingVersions(uow)
    access = AccessChanges(versions, ends=CredentialEnds(), clock=auth.clock)

    await ENDINGS[ending](auth, user, uow, access)

    assert versions.held_at_retried_bumps == [False, False]
