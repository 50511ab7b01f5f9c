"""Use case: who is calling? (every private request, by access token or API key)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.api_keys import ApiKey, hash_api_key, looks_like_api_key
from whalli.domain.model.errors import InvalidToken, ServiceUnavailable
from whalli.domain.model.principal import Principal
from whalli.domain.model.tokens import AccessClaims
from whalli.domain.services.auth.key_owners import KeyOwners
from whalli.domain.services.auth.principal_cache import KnownCredential, PrincipalCache
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.clock import Clock
from whalli.ports.credential_versions import CredentialVersions
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
    - the user is read from the database, or taken from what this process read of the same
      credential moments ago (``principals``, no older than its age limit,
      ``WHALLI_CREDENTIAL_CACHE_S``) when the user's credential version (``versions``), read
      beside the request's rate-limit count and before any database read, is still the one
      read with it: every change of role or plan, disabling, deletion or ended credential
      bumps that version before its response (``AccessChanges``), so it applies to the very
      next request in every process; what time alone ends (a key's expiry, the session's
      end) is checked on what is remembered too. The version is read only for a user known
      before the read (an access token's subject; the owner of an API key this process
      accepted lately);
    - a disabled or deleted account is refused;
    - an access token is only good while its session (refresh-token family) is active, so
      logging out ends the access tokens of that session too;
    - every failure is the same ``InvalidToken`` with the same message: the caller cannot
      learn which check failed (the issuer's detailed reason is dropped);
    - at most one database read, in one round trip and outside a transaction
      (``UnitOfWork.read_only``): the user with its session's end, or the key with its user;
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
        principals: PrincipalCache | None = None,
        versions: CredentialVersions | None = None,
    ) -> None:
        """``key_owners`` is the process's hint of who recent API keys belong to, and
        ``principals`` what it read of recent credentials (both shared by every request; see
        ``claimed_user`` and the rules); ``versions`` the users' credential versions."""
        self._uow = uow
        self._issuer = issuer
        self._clock = clock
        self._last_used_interval = last_used_interval
        self._key_owners = key_owners
        self._principals, self._versions = principals, versions
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
        user_id, session_id = claims.subject, claims.session_id
        version = self._version_of(user_id)  # sent now, beside the rate limit's count
        read_at = self._clock.now()
        session = ("session", session_id)
        current, known = await self._known(session, user_id, version)
        if known is not None:
            if known.session_until is None or read_at >= known.session_until:
                raise InvalidToken()  # the session ran out of time since it was read
            user = known.fresh_user()
        else:
            async with self._uow.read_only() as uow:
                found = await uow.users.find_with_session_end(user_id, session_id)
            if found is None or found[0].disabled or found[1] is None or read_at >= found[1]:
                if self._principals is not None:  # an entry of an older version: not again
                    self._principals.forget(session)
                raise InvalidToken()
            user, until = found
            if current is not None:
                self._remember(session, KnownCredential(
                    user=user, version=current, session_until=until
                ))  # fmt: skip
        return Principal(user=user, session_id=session_id, read_at=read_at)

    def _forget(self, key_hash: str) -> None:
        if self._key_owners is not None:
            self._key_owners.forget(key_hash)
        if self._principals is not None:
            self._principals.forget(("key", key_hash))

    async def _by_api_key(self, secret: str) -> Principal:
        key_hash = hash_api_key(secret)
        owner = None if self._key_owners is None else self._key_owners.owner(key_hash)
        version = None if owner is None else self._version_of(owner)
        read_at = self._clock.now()
        credential = ("key", key_hash)
        current, known = await self._known(credential, owner, version)
        now = self._clock.now()
        if known is not None and known.api_key is not None:
            key, user = known.api_key, known.fresh_user()
            if not key.is_active(now):  # expired since it was read
                self._forget(key_hash)
                raise InvalidToken()
        else:
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
            if current is not None and owner == user.id:  # (its version read before the read)
                self._remember(credential, KnownCredential(
                    user=user, version=current, api_key=key
                ))  # fmt: skip
        stale_before = now - self._last_used_interval
        if key.last_used_at is None or key.last_used_at < stale_before:
            await self._record_use(key, now, stale_before)
            if self._principals is not None:  # recorded: not again for every remembered use
                self._principals.note_use(credential, now)
        return Principal(user=user, api_key_id=key.id, read_at=read_at)

    def _version_of(self, user_id: UUID) -> asyncio.Future[bytes | None] | None:
        """The user's credential version, its read sent now; ``None`` when nothing is
        remembered here (no cache, no versions)."""
        if self._principals is None or self._versions is None:
            return None
        return self._versions.current(user_id)

    async def _known(
        self,
        credential: tuple[str, object],
        user_id: UUID | None,
        version: asyncio.Future[bytes | None] | None,
    ) -> tuple[bytes | None, KnownCredential | None]:
        """The user's version (``None``: it cannot be told), and what is remembered of
        ``credential`` if it was remembered with that very version. The version is awaited
        before any database read of the credential, so a version remembered with a read was
        current before that read began (a change committed after it bumps it)."""
        if version is None or self._principals is None or user_id is None:
            return None, None
        try:
            current = await version
        except ServiceUnavailable:
            # Nothing remembered is trusted, nor remembered; and all is forgotten: a change
            # made while the versions cannot be read may never bump them.
            self._principals.clear()
            return None, None
        if current is None:
            return None, None
        known = self._principals.get(credential)
        if known is None or known.user.id != user_id or known.version != current:
            return current, None
        return current, known

    def _remember(self, credential: tuple[str, object], known: KnownCredential) -> None:
        if self._principals is not None:  # a copy: the caller's user is its own to change
            self._principals.put(
                credential, msgspec.structs.replace(known, user=known.fresh_user())
            )

    async def _record_use(self, key: ApiKey, now: datetime, stale_before: datetime) -> None:
        try:
            async with self._uow.autocommit() as uow:  # one statement: no BEGIN/COMMIT
                await uow.api_keys.record_use(key.id, now, stale_before=stale_before)
        except Exception as e:  # bookkeeping: never the reason a request fails
            log.warning("The last use of API key %s was not recorded: %r", key.id, e)
