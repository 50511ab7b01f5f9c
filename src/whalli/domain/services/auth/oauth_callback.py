"""Use case: finish an OAuth sign-in when the provider sends the browser back."""

from __future__ import annotations

import contextlib
import hmac
from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.errors import Conflict, InvalidEmail, OAuthFailed, UserNotFound
from whalli.domain.model.oauth import OAuthIdentity, OAuthProfile, OAuthProviderName
from whalli.domain.model.users import Plan, Role, User, clean_external_name, normalize_email
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.accounts import add_account
from whalli.domain.services.auth.oauth_start import PendingSignIn, binding_hash, state_key
from whalli.domain.services.auth.sessions import TokenPair, masked_repr, open_session
from whalli.ports.cache import Cache
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.oauth_provider import OAuthProvider
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork

MAX_STATE_LENGTH = 128
_ATTEMPTS = 2


class OAuthCallback(msgspec.Struct, frozen=True, kw_only=True):
    state: str | None
    code: str | None
    binding: str | None  # the ``whalli_oauth`` cookie

    def __repr__(self) -> str:
        return masked_repr(self, "code", "binding")


UNCONFIRMED_ACCOUNT = (
    "An account already uses this email address, and nothing confirmed the address is its "
    "owner's: sign in to it the way it was made (with its password), then link this provider "
    "to it (POST /api/auth/oauth/{provider}/link)."
)
LINK_SESSION_ENDED = "The session that asked for this link has ended: sign in and try again."
LINKED_ELSEWHERE = "This provider account is already linked to another account."


class ProviderLinked(Value, frozen=True, kw_only=True):
    """A link callback's outcome: the provider account is linked to the user's account."""

    provider: OAuthProviderName
    user_id: UUID


class CompleteOAuth:
    """Exchange the provider's code, find or create the account, and open a session.

    Rules:
    - the state is taken from the cache atomically (single use): missing, unknown, expired or
      reused is ``OAuthFailed("invalid state")``; so is a state started for another provider
      or in another browser (the binding cookie's hash is compared in constant time);
    - the account is the one already linked to (provider, subject); otherwise a *verified*
      email links to the account with that email, or creates one (user, free plan, verified
      email, no password, personal project) along with the link;
    - a verified email never links to an account whose own email nobody verified (a password
      sign-up: nothing checks the mailbox): ``OAuthFailed`` (``UNCONFIRMED_ACCOUNT``), the
      account unchanged. Linking would let whoever signed up with someone else's address keep
      its password, sessions and keys in the account its owner then uses (pre-account
      hijacking); taking the account over instead would wipe an honest user's password and
      API keys the day they first sign in with a provider. Its owner signs in with its
      password, as before;
    - an unverified email never links to an existing account: with no account on that email
      a new one is created (email not verified), otherwise ``OAuthFailed``; no email at all
      is ``OAuthFailed``;
    - a disabled account cannot sign in (``OAuthFailed``);
    - a provider's display name is cleaned (``clean_external_name``), never refused; a name
      that cleans to nothing is stored empty, as a missing one;
    - user, link and session are written in one unit of work; two first sign-ins racing on
      the same account retry once and find what the other created.

    A state started by ``StartOAuth(link_to=...)`` links instead (``ProviderLinked``, no new
    session): the provider account is added to the account of the session that asked, whatever
    its email, if that session is still active and the account not disabled (else
    ``OAuthFailed``); a provider account already linked to that account is a success, one
    linked to another account is ``OAuthFailed`` (``LINKED_ELSEWHERE``), nothing moved. If the
    provider vouches for the account's own address (verified, the same once normalized), the
    address becomes verified: its owner, signed in, proved they hold the mailbox.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        cache: Cache,
        *,
        issuer: AccessTokenIssuer,
        clock: Clock,
        ids: IdGenerator,
        refresh_ttl: timedelta,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._cache = cache
        self._issuer = issuer
        self._clock = clock
        self._ids = ids
        self._refresh_ttl = refresh_ttl
        self._access = access

    async def execute(
        self, provider: OAuthProvider, callback: OAuthCallback
    ) -> TokenPair | ProviderLinked:
        pending = await self._claim_state(provider, callback)
        if not callback.code:
            raise OAuthFailed("The provider sent no sign-in code.")
        profile = await provider.fetch_profile(
            code=callback.code, code_verifier=pending.verifier, redirect_uri=pending.redirect_uri
        )
        if pending.link_user_id is not None and pending.link_session_id is not None:
            return await self._link(profile, pending.link_user_id, pending.link_session_id)
        for attempt in range(_ATTEMPTS):
            try:
                return await self._sign_in(profile)
            except Conflict:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _claim_state(self, provider: OAuthProvider, callback: OAuthCallback) -> PendingSignIn:
        state = callback.state or ""
        if not 0 < len(state) <= MAX_STATE_LENGTH:
            raise OAuthFailed("invalid state")
        raw = await self._cache.pop(state_key(state))  # popped first: a state never works twice
        if raw is None:
            raise OAuthFailed("invalid state")
        pending = msgspec.json.decode(raw, type=PendingSignIn)
        presented = binding_hash(callback.binding or "")
        if pending.provider != provider.name or not hmac.compare_digest(
            presented, pending.binding_hash
        ):
            raise OAuthFailed("invalid state")
        return pending

    async def _sign_in(self, profile: OAuthProfile) -> TokenPair:
        async with self._uow as uow:
            user = await self._account_for(uow, profile)
            if user.disabled:
                raise OAuthFailed("This account is disabled.")
            tokens = await open_session(
                uow, user, issuer=self._issuer, clock=self._clock, ids=self._ids,
                refresh_ttl=self._refresh_ttl,
            )  # fmt: skip
            await uow.commit()
        return tokens

    async def _account_for(self, uow: UnitOfWork, profile: OAuthProfile) -> User:
        identity = await uow.oauth_identities.find(profile.provider, profile.subject)
        if identity is not None:
            # held shared, as a refresh and a sign-in hold it, then read again: a reset that
            # unlinks the provider, or a change ending every session, runs wholly before this
            # session opens (and is seen) or after (and ends it too)
            with contextlib.suppress(UserNotFound):  # (deleted meanwhile, its links with it)
                await uow.users.lock_sessions(identity.user_id)
            identity = await uow.oauth_identities.find(profile.provider, profile.subject)
        if identity is not None:
            return await uow.users.get(identity.user_id)
        if not profile.email:
            raise OAuthFailed("The provider did not share a verified email address.")
        try:
            email = normalize_email(profile.email)
        except InvalidEmail:
            raise OAuthFailed("The provider sent an invalid email address.") from None
        existing = await uow.users.find_by_email(email)
        if existing is not None:  # held and read again, as above
            try:
                await uow.users.lock_sessions(existing.id)
                existing = await uow.users.get(existing.id)
            except UserNotFound:
                existing = None
        if existing is not None and not profile.email_verified:
            raise OAuthFailed("email not verified")
        if existing is not None and not existing.email_verified:
            raise OAuthFailed(UNCONFIRMED_ACCOUNT)
        user = existing or await self._create_user(uow, profile, email)
        await uow.oauth_identities.add(
            OAuthIdentity(
                provider=profile.provider, subject=profile.subject, user_id=user.id,
                email=email, created_at=self._clock.now(),
            )
        )  # fmt: skip
        return user

    async def _link(self, profile: OAuthProfile, user_id: UUID, session_id: UUID) -> ProviderLinked:
        now = self._clock.now()
        async with self._uow as uow:
            found = await uow.users.find_with_session(user_id, session_id, now)
            if found is None or not found[1]:
                raise OAuthFailed(LINK_SESSION_ENDED)
            user = await uow.users.get_for_update(user_id)
            if user.disabled:
                raise OAuthFailed("This account is disabled.")
            identity = await uow.oauth_identities.find(profile.provider, profile.subject)
            if identity is not None and identity.user_id != user.id:
                raise OAuthFailed(LINKED_ELSEWHERE)
            email = _valid_email(profile.email)
            if identity is None:
                await uow.oauth_identities.add(
                    OAuthIdentity(
                        provider=profile.provider, subject=profile.subject, user_id=user.id,
                        email=email, created_at=now,
                    )
                )  # fmt: skip
            own = normalize_email(user.email)  # (an older account may hold its A-labels)
            verified = profile.email_verified and email == own and not user.email_verified
            if verified:
                user.email_verified = True
                await uow.users.update(user)
            await uow.commit()
        if verified and self._access is not None:
            await self._access.changed(user.id)
        return ProviderLinked(provider=profile.provider, user_id=user.id)

    async def _create_user(self, uow: UnitOfWork, profile: OAuthProfile, email: str) -> User:
        user = User.create(
            id=self._ids.new_id(), email=email, name=clean_external_name(profile.name),
            role=Role.USER, plan=Plan.FREE, email_verified=profile.email_verified,
            now=self._clock.now(),
        )  # fmt: skip
        await add_account(uow, user)
        return user


def _valid_email(raw: str | None) -> str | None:
    """The provider's address, normalized; ``None`` if it sent none or an invalid one."""
    if not raw:
        return None
    try:
        return normalize_email(raw)
    except InvalidEmail:
        return None
