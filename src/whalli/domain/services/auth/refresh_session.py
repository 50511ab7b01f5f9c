"""Use case: trade a refresh token for a new pair (rotation with reuse detection)."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from whalli.domain.model.errors import InvalidToken, RefreshTokenReused, UserNotFound
from whalli.domain.model.tokens import REFRESH_SECRET_BYTES, RefreshToken, hash_refresh_secret
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.sessions import TokenPair, issue_access_token, masked_repr
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork

MAX_REFRESH_TOKEN_LENGTH = 256  # ours are 43 characters; anything far longer is not one


class RefreshSession(msgspec.Struct, frozen=True, kw_only=True):
    refresh_token: str

    def __repr__(self) -> str:
        return masked_repr(self, "refresh_token")


class RefreshSessionHandler:
    """Spend a refresh token, issue its successor and a new access token.

    Rules:
    - the token is looked up by its hash and locked, so two concurrent refreshes of one token
      are serialized: the second one sees it spent;
    - an unknown token: ``InvalidToken``;
    - a token that was already spent was copied: the whole family (the successor included) is
      revoked and that revocation committed, then ``RefreshTokenReused`` (401) is raised, so
      both the thief and the victim must sign in again;
    - except within ``reuse_grace`` of its first use: two tabs (or a retry after a lost
      response) refreshing with the same token at once each get a working pair, a second
      successor in the same family (``RefreshToken.reissue``). The window counts from the
      first use and never slides; ``timedelta(0)`` turns it off;
    - a revoked token, or a family past its absolute lifetime: ``InvalidToken``;
    - a disabled or deleted account: ``InvalidToken`` (the client cannot tell why);
    - the successor keeps the family and its expiry: rotating never extends a session;
    - the account is held (shared) first: a refresh and a revocation of every session (log
      out everywhere, a password change, a disabled account) run one after the other, so the
      revocation also ends the successor of a refresh in flight;
    - a family revoked for reuse is noted and told once committed (``AccessChanges.ended``,
      as ``LogoutAll``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        issuer: AccessTokenIssuer,
        clock: Clock,
        ids: IdGenerator,
        reuse_grace: timedelta = timedelta(0),
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._access = access
        self._reuse_grace = reuse_grace
        self._issuer = issuer
        self._clock = clock
        self._ids = ids

    async def execute(self, command: RefreshSession) -> TokenPair:
        secret = command.refresh_token
        if not secret or len(secret) > MAX_REFRESH_TOKEN_LENGTH:
            raise InvalidToken()
        now = self._clock.now()
        token_hash = hash_refresh_secret(secret)
        async with self._uow as uow:
            owner = await uow.refresh_tokens.owner_of(token_hash)
            if owner is None:
                raise InvalidToken()
            try:  # the account before the token, in the order a revocation of all takes them
                await uow.users.lock_sessions(owner)
            except UserNotFound:
                raise InvalidToken() from None
            token = await uow.refresh_tokens.find_by_hash_for_update(token_hash)
            if token is None:
                raise InvalidToken()
            spent = token.used_at is not None
            pair: TokenPair | None = None
            if spent and not token.reissuable(now, self._reuse_grace):  # reused
                await uow.refresh_tokens.revoke_family(token.family_id, now)
                await uow.commit()
            else:
                pair = await self._successor(uow, token, spent, now)
        if pair is None:  # told once the connection is back in its pool (its bump may retry)
            if self._access is not None:
                await self._access.ended(token.user_id)
            raise RefreshTokenReused()
        return pair

    async def _successor(
        self, uow: UnitOfWork, token: RefreshToken, spent: bool, now: datetime
    ) -> TokenPair:
        """The token's successor and a new access token, committed."""
        if not spent and not token.is_active(now):
            raise InvalidToken()
        try:
            user = await uow.users.get(token.user_id)
        except UserNotFound:
            raise InvalidToken() from None
        if user.disabled:
            raise InvalidToken()
        new_secret = self._ids.new_token(REFRESH_SECRET_BYTES)
        if spent:
            successor = token.reissue(
                new_id=self._ids.new_id(), new_secret=new_secret, now=now,
                grace=self._reuse_grace,
            )  # fmt: skip
        else:
            successor = token.rotate(new_id=self._ids.new_id(), new_secret=new_secret, now=now)
            await uow.refresh_tokens.update(token)
        await uow.refresh_tokens.add(successor)
        access, expires_in = issue_access_token(
            self._issuer, user_id=user.id, session_id=token.family_id, clock=self._clock,
            ids=self._ids,
        )  # fmt: skip
        await uow.commit()
        return TokenPair(access_token=access, refresh_token=new_secret, expires_in=expires_in)
