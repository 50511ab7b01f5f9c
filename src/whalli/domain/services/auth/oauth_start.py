"""Use case: send the browser to an OAuth provider (authorization code flow with PKCE)."""

from __future__ import annotations

import base64
import hashlib
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.errors import ApiKeyNotAllowed
from whalli.domain.model.oauth import OAuthProviderName
from whalli.domain.model.principal import Principal
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.cache import Cache
from whalli.ports.ids import IdGenerator
from whalli.ports.oauth_provider import OAuthProvider

STATE_TTL_SECONDS = 600
STATE_BYTES = 32  # 256 bits: unguessable, so a state names exactly one pending sign-in
BINDING_COOKIE = "whalli_oauth"
_KEY_PREFIX = "oauth:"


def state_key(state: str) -> str:
    return _KEY_PREFIX + state


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode("utf-8")).hexdigest()


class PendingSignIn(msgspec.Struct, frozen=True, kw_only=True):
    """What the cache keeps under ``oauth:{state}`` until the provider sends the browser back.

    Only the hash of the browser binding is kept: whoever reads the cache cannot forge the
    cookie. The PKCE verifier never leaves the server before the token exchange.
    """

    provider: OAuthProviderName
    verifier: str
    binding_hash: str
    redirect_uri: str
    # Set when a signed-in user links the provider to their account (``link_to``): the
    # callback then adds the link to that account, if that session is still active.
    link_user_id: UUID | None = None
    link_session_id: UUID | None = None

    def __repr__(self) -> str:
        return masked_repr(self, "verifier")


class OAuthStarted(Value, frozen=True, kw_only=True):
    authorization_url: str
    browser_binding: str  # set by the HTTP layer as the ``whalli_oauth`` cookie
    state: str

    def __repr__(self) -> str:
        return masked_repr(self, "browser_binding")


class StartOAuth:
    """Begin a sign-in with ``provider``.

    Rules:
    - the ``state`` carries >= 256 random bits and is good for one callback within 10 minutes;
    - PKCE S256: a fresh verifier per attempt, only its challenge goes to the provider;
    - a fresh browser-binding nonce is returned for an HttpOnly cookie; the callback must
      present it, so a state lured into another browser (login CSRF) is refused;
    - ``redirect_uri`` is stored so that the token exchange repeats exactly the same value;
    - ``link_to``: a signed-in user's session (never an API key: ``ApiKeyNotAllowed``) asks
      to link the provider to their own account; the callback links rather than signs in.
    """

    def __init__(self, cache: Cache, ids: IdGenerator) -> None:
        self._cache = cache
        self._ids = ids

    async def execute(
        self, provider: OAuthProvider, *, redirect_uri: str, link_to: Principal | None = None
    ) -> OAuthStarted:
        if link_to is not None and link_to.session_id is None:
            raise ApiKeyNotAllowed()
        state = self._ids.new_token(STATE_BYTES)
        verifier = self._ids.new_token(32)  # 43 base64url characters, as RFC 7636 asks
        binding = self._ids.new_token(32)
        pending = PendingSignIn(
            provider=provider.name,
            verifier=verifier,
            binding_hash=binding_hash(binding),
            redirect_uri=redirect_uri,
            link_user_id=None if link_to is None else link_to.user_id,
            link_session_id=None if link_to is None else link_to.session_id,
        )
        await self._cache.set(state_key(state), msgspec.json.encode(pending), STATE_TTL_SECONDS)
        url = provider.authorization_url(
            state=state, code_challenge=pkce_challenge(verifier), redirect_uri=redirect_uri
        )
        return OAuthStarted(authorization_url=url, browser_binding=binding, state=state)
