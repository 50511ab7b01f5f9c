"""Sessions: a refresh-token family plus the short-lived access tokens minted for it.

Not a use case of its own: ``open_session`` runs inside the caller's unit of work (Register,
Login, the OAuth sign-in), which commits it together with whatever else it did.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.tokens import REFRESH_SECRET_BYTES, AccessClaims, RefreshToken
from whalli.domain.model.users import User
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork


def masked_repr(obj: object, *secret_fields: str) -> str:
    """``Name(field=value, secret='***')``: commands and results holding a password or token
    use it as their ``repr``, so a log line or a traceback cannot show the secret."""
    fields: tuple[str, ...] = getattr(obj, "__struct_fields__", ())
    shown = ", ".join(
        f"{name}={'***' if name in secret_fields else repr(getattr(obj, name))}" for name in fields
    )
    return f"{type(obj).__name__}({shown})"


class TokenPair(Value, frozen=True, kw_only=True):
    """What a client receives when a session opens or rotates."""

    access_token: str
    refresh_token: str
    expires_in: int  # seconds until the access token expires
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme name, not a secret)

    def __repr__(self) -> str:
        return masked_repr(self, "access_token", "refresh_token")


def issue_access_token(
    issuer: AccessTokenIssuer, *, user_id: UUID, session_id: UUID, clock: Clock, ids: IdGenerator
) -> tuple[str, int]:
    """A signed access token for ``session_id`` and its lifetime in seconds."""
    claims = AccessClaims.new(
        subject=user_id,
        session_id=session_id,
        jti=str(ids.new_id()),
        now=clock.now(),
        ttl=issuer.ttl,
    )
    return issuer.issue(claims), int(claims.lifetime.total_seconds())


async def open_session(
    uow: UnitOfWork,
    user: User,
    *,
    issuer: AccessTokenIssuer,
    clock: Clock,
    ids: IdGenerator,
    refresh_ttl: timedelta,
) -> TokenPair:
    """Start a new refresh-token family for ``user`` and mint its first access token.

    Must run inside ``async with uow:``; the caller commits. Only the refresh secret's hash is
    stored; the secret itself is returned once, in the pair.
    """
    secret = ids.new_token(REFRESH_SECRET_BYTES)
    token = RefreshToken.issue(
        id=ids.new_id(),
        user_id=user.id,
        family_id=ids.new_id(),
        secret=secret,
        now=clock.now(),
        ttl=refresh_ttl,
    )
    await uow.refresh_tokens.add(token)
    access, expires_in = issue_access_token(
        issuer, user_id=user.id, session_id=token.family_id, clock=clock, ids=ids
    )
    return TokenPair(access_token=access, refresh_token=secret, expires_in=expires_in)


async def replace_password(
    uow: UnitOfWork,
    user: User,
    new_hash: str,
    *,
    issuer: AccessTokenIssuer,
    clock: Clock,
    ids: IdGenerator,
    refresh_ttl: timedelta,
    access: AccessChanges | None,
) -> TokenPair:
    """What a password change and a reset share, on ``user`` locked in ``uow``: store
    ``new_hash``, end every session (each refresh-token family revoked), open a new one, have
    ``access`` prepare the change (a store it cannot reach refuses it: nothing saved), commit.
    The caller tells ``access.ended`` once the unit of work is left."""
    now = clock.now()
    user.password_hash = new_hash
    user.updated_at = now
    await uow.users.update(user)
    await uow.refresh_tokens.revoke_all_for_user(user.id, now)
    tokens = await open_session(
        uow, user, issuer=issuer, clock=clock, ids=ids, refresh_ttl=refresh_ttl
    )
    if access is not None:
        await access.prepare(user.id)
    await uow.commit()
    return tokens
