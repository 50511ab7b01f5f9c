"""Use case: who is calling? (every private request, by access token or API key)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.api_keys import ApiKey, hash_api_key, looks_like_api_key
from whalli.domain.model.errors import InvalidToken
from whalli.domain.model.principal import Principal
from whalli.domain.model.tokens import AccessClaims
from whalli.domain.services.auth.key_owners import KeyOwners
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.clock import Clock
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

MAX_CREDENTIAL_LENGTH = 4096
LAST_USED_INTERVAL = timedelta(seconds=60)


class Authenticate(msgspec.Struct, frozen=True, kw_only=True):
    credential: str  # an access token (JWT) or an API key, as presented

    def __repr__(self) -> str:
        return masked_repr(self, "credential")


class AuthenticateHandler:
    """Turn a presented credential into the :class:`Principal` of this request.

    Rules:
    - an API key (``whk_`` prefix) is looked up by its SHA-256 and must be neither revoked nor
      expired; anything else must be a genuine, current access token (``AccessTokenIssuer``);
    - the user is read fresh from the database on every call, so a change of role or plan, or
      disabling the account, applies to the very next request;
    - a disabled or deleted account is refused;
    - an access token is only good while its session (refresh-token family) is active, so
      logging out ends the access tokens of that session too;
    - every failure is the same ``InvalidToken`` with the same message: the caller cannot
      learn which check failed (the issuer's detailed reason is dropped);
    - one read, in one round trip and outside a transaction (``UnitOfWork.read_only``): the
      user with its session state, or the key with its user;
    - an accepted API key's ``last_used_at`` is recorded when it is unset or older than
      ``last_used_interval`` (decided on the row just read, so no extra read), so a busy key
      costs one short write per interval, not one per request; the write touches only that
      column (``record_use``: a concurrent revocation is not undone), and if it fails the
      request goes on (the failure is logged, with the key's id, never its secret).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        issuer: AccessTokenIssuer,
        clock: Clock,
        last_used_interval: timedelta = LAST_USED_INTERVAL,
        key_owners: KeyOwners | None = None,
    ) -> None:
        """``key_owners`` is the process's hint of who recent API keys belong to (shared by
        every request; see ``claimed_user``)."""
        self._uow = uow
        self._issuer = issuer
        self._clock = clock
        self._last_used_interval = last_used_interval
        self._key_owners = key_owners
        self._verified: tuple[str, AccessClaims] | None = None

    def claimed_user(self, credential: str) -> UUID | None:
        """The user a genuine access token names, checked without the database (signature,
        times, issuer, audience), or the owner of an API key this process accepted lately:
        enough to charge that user's rate budget while ``execute`` reads the rest. ``None`` for
        a token that does not verify or a key not seen lately. It is not an authentication:
        the account may be disabled, the session ended or the key revoked."""
        if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
            return None
        if looks_like_api_key(credential):
            if self._key_owners is None:
                return None
            return self._key_owners.owner(hash_api_key(credential))
        try:
            claims = self._issuer.verify(credential)
        except InvalidToken:
            return None
        self._verified = (credential, claims)  # execute will not verify it twice
        return claims.subject

    async def execute(self, command: Authenticate) -> Principal:
        credential = command.credential
        if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
            raise InvalidToken()
        if looks_like_api_key(credential):
            return await self._by_api_key(credential)
        return await self._by_access_token(credential)

    async def _by_access_token(self, token: str) -> Principal:
        if self._verified is not None and self._verified[0] == token:
            claims = self._verified[1]
        else:
            try:
                claims = self._issuer.verify(token)
            except InvalidToken:
                raise InvalidToken() from None
        read_at = self._clock.now()
        async with self._uow.read_only() as uow:
            found = await uow.users.find_with_session(claims.subject, claims.session_id, read_at)
        if found is None:
            raise InvalidToken()
        user, session_active = found
        if user.disabled or not session_active:
            raise InvalidToken()
        return Principal(user=user, session_id=claims.session_id, read_at=read_at)

    def _forget(self, key_hash: str) -> None:
        if self._key_owners is not None:
            self._key_owners.forget(key_hash)

    async def _by_api_key(self, secret: str) -> Principal:
        key_hash = hash_api_key(secret)
        read_at = self._clock.now()
        async with self._uow.read_only() as uow:
            found = await uow.api_keys.find_by_hash_with_user(key_hash)
        if found is None:
            self._forget(key_hash)
            raise InvalidToken()
        key, user = found
        now = self._clock.now()
        if not key.is_active(now) or user.disabled:
            # a revoked key replayed (a leak) stops charging its owner's budget
            self._forget(key_hash)
            raise InvalidToken()
        if self._key_owners is not None:
            self._key_owners.remember(key_hash, user.id)
        stale_before = now - self._last_used_interval
        if key.last_used_at is None or key.last_used_at < stale_before:
            await self._record_use(key, now, stale_before)
        return Principal(user=user, api_key_id=key.id, read_at=read_at)

    async def _record_use(self, key: ApiKey, now: datetime, stale_before: datetime) -> None:
        try:
            async with self._uow.autocommit() as uow:  # one statement: no BEGIN/COMMIT
                await uow.api_keys.record_use(key.id, now, stale_before=stale_before)
        except Exception as e:  # bookkeeping: never the reason a request fails
            log.warning("The last use of API key %s was not recorded: %r", key.id, e)
