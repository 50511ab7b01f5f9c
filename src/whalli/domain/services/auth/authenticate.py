"""Use case: who is calling? (every private request, by access token or API key)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.api_keys import hash_api_key, looks_like_api_key
from whalli.domain.model.errors import InvalidToken
from whalli.domain.model.principal import Principal
from whalli.domain.model.tokens import AccessClaims
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.clock import Clock
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork

MAX_CREDENTIAL_LENGTH = 4096


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
      user with its session state, or the key with its user. (``last_used_at`` of a key is
      not written here: the repository's ``update`` rewrites the whole row and could undo a
      concurrent revocation.)
    """

    def __init__(self, uow: UnitOfWork, *, issuer: AccessTokenIssuer, clock: Clock) -> None:
        self._uow = uow
        self._issuer = issuer
        self._clock = clock
        self._verified: tuple[str, AccessClaims] | None = None

    def claimed_user(self, credential: str) -> UUID | None:
        """The user a genuine access token names, checked without the database (signature,
        times, issuer, audience): enough to charge that user's rate budget while ``execute``
        reads the rest. ``None`` for an API key or a token that does not verify. It is not an
        authentication: the account may be disabled or the session ended."""
        if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
            return None
        if looks_like_api_key(credential):
            return None
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
        async with self._uow.read_only() as uow:
            found = await uow.users.find_with_session(
                claims.subject, claims.session_id, self._clock.now()
            )
        if found is None:
            raise InvalidToken()
        user, session_active = found
        if user.disabled or not session_active:
            raise InvalidToken()
        return Principal(user=user, session_id=claims.session_id)

    async def _by_api_key(self, secret: str) -> Principal:
        async with self._uow.read_only() as uow:
            found = await uow.api_keys.find_by_hash_with_user(hash_api_key(secret))
        if found is None:
            raise InvalidToken()
        key, user = found
        if not key.is_active(self._clock.now()) or user.disabled:
            raise InvalidToken()
        return Principal(user=user, api_key_id=key.id)
