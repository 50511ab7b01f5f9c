"""Access tokens as JWTs (PyJWT), HS256 only, following RFC 8725 (JWT best current practices).

- One pinned algorithm: the header's ``alg`` is checked against it, never used to pick a key,
  so ``none``, other HMAC sizes and asymmetric algorithms (algorithm confusion) are refused.
- Only the ``alg``, ``typ`` and ``kid`` headers are allowed: key-location headers (``jku``,
  ``jwk``, ``x5u``, ``x5c``) and extensions (``crit``, ``b64``) are refused outright, and a
  ``kid`` must name this issuer's key (with no ``key_id`` configured, no ``kid`` is accepted).
- Explicit typing (RFC 9068): ``typ`` is ``at+jwt`` and the ``token_type`` claim is
  ``access``, so another JWT signed with the same key (a refresh or email token) is not an
  access token.
- ``exp``, ``nbf``, ``iat``, ``iss``, ``aud``, ``sub``, ``sid``, ``jti`` are all required; the
  time claims are checked here against the injected clock (PyJWT reads the wall clock), with
  at most 30 seconds of leeway.
- Errors are ``InvalidToken`` with a generic message and a ``reason`` detail; the PyJWT
  exception is dropped (``from None``) so neither the message nor a logged traceback can carry
  any part of the token.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt

from whalli.domain.model.errors import InvalidToken
from whalli.domain.model.tokens import ACCESS_TOKEN_TYPE, DEFAULT_ACCESS_TTL, AccessClaims
from whalli.ports.clock import Clock
from whalli.ports.token_issuer import AccessTokenIssuer

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
MAX_LEEWAY = timedelta(seconds=30)
MAX_TOKEN_LENGTH = 4096  # ours are ~400 characters; refuse to parse anything much larger
TYP_HEADER = "at+jwt"
_ALLOWED_HEADERS = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "sub", "sid", "jti", "token_type"]
_MESSAGES = {
    "malformed": "The token is malformed.",
    "header": "The token's header is not accepted.",
    "algorithm": "The token's algorithm is not accepted.",
    "signature": "The token's signature is invalid.",
    "claims": "The token's claims are missing or invalid.",
    "issuer": "The token was issued by someone else.",
    "audience": "The token is meant for another audience.",
    "type": "The token is not an access token.",
    "expired": "The token has expired.",
    "not_yet_valid": "The token is not valid yet.",
}


def _invalid(reason: str) -> InvalidToken:
    return InvalidToken(_MESSAGES[reason], reason=reason)


class JwtAccessTokenIssuer(AccessTokenIssuer):
    def __init__(
        self,
        *,
        secret: bytes | str,
        issuer: str,
        audience: str,
        clock: Clock,
        ttl: timedelta = DEFAULT_ACCESS_TTL,
        leeway: timedelta = MAX_LEEWAY,
        key_id: str | None = None,
    ) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        if not issuer or not audience:
            raise ValueError("the JWT issuer and audience must not be empty")
        if ttl < timedelta(seconds=1):
            raise ValueError("the access token ttl must be at least one second")
        if not timedelta(0) <= leeway <= MAX_LEEWAY:
            raise ValueError(f"the JWT leeway must be between 0 and {MAX_LEEWAY}")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._ttl = ttl
        self._leeway = leeway
        self._key_id = key_id

    def __repr__(self) -> str:  # never show the key
        return f"JwtAccessTokenIssuer(issuer={self._issuer!r}, audience={self._audience!r})"

    @property
    def ttl(self) -> timedelta:
        return self._ttl

    def issue(self, claims: AccessClaims) -> str:
        if claims.token_type != ACCESS_TOKEN_TYPE:
            raise ValueError("only access claims are issued as JWTs")
        if not timedelta(0) < claims.lifetime <= self._ttl:
            raise ValueError("the claims' lifetime must be positive and at most the ttl")
        issued_at = int(claims.issued_at.timestamp())
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(claims.subject),
            "sid": str(claims.session_id),
            "jti": claims.jti,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": int(claims.expires_at.timestamp()),
            "token_type": ACCESS_TOKEN_TYPE,
        }
        headers: dict[str, Any] = {"typ": TYP_HEADER}
        if self._key_id is not None:
            headers["kid"] = self._key_id
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers=headers)

    def verify(self, token: str) -> AccessClaims:
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise _invalid("malformed")
        if not token.isascii() or token.count(".") != 2:
            raise _invalid("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed") from None
        self._check_header(header)
        payload = self._decode(token)
        return self._claims(payload)

    def _check_header(self, header: dict[str, Any]) -> None:
        if not set(header) <= _ALLOWED_HEADERS:
            raise _invalid("header")
        if header.get("alg") != ALGORITHM:
            raise _invalid("algorithm")
        if header.get("typ") != TYP_HEADER:
            raise _invalid("header")
        if "kid" in header and (self._key_id is None or header["kid"] != self._key_id):
            raise _invalid("header")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key=self._key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "verify_signature": True,
                    "require": _REQUIRED_CLAIMS,
                    "verify_aud": True,
                    "strict_aud": True,
                    "verify_iss": True,
                    "verify_sub": True,
                    "verify_jti": True,
                    # Checked in _claims against the injected clock instead of the wall clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAlgorithmError:
            raise _invalid("algorithm") from None
        except jwt.InvalidSignatureError:
            raise _invalid("signature") from None
        except jwt.InvalidIssuerError:
            raise _invalid("issuer") from None
        except jwt.InvalidAudienceError:
            raise _invalid("audience") from None
        except jwt.MissingRequiredClaimError:
            raise _invalid("claims") from None
        except jwt.DecodeError:
            raise _invalid("malformed") from None
        except jwt.PyJWTError:
            raise _invalid("claims") from None

    def _claims(self, payload: dict[str, Any]) -> AccessClaims:
        if payload["token_type"] != ACCESS_TOKEN_TYPE:
            raise _invalid("type")
        issued_at, not_before, expires_at = (
            _numeric_date(payload[name]) for name in ("iat", "nbf", "exp")
        )
        if expires_at <= issued_at:
            raise _invalid("claims")
        now = self._clock.now()
        if issued_at > now + self._leeway or not_before > now + self._leeway:
            raise _invalid("not_yet_valid")
        if expires_at <= now - self._leeway:
            raise _invalid("expired")
        jti = payload["jti"]
        if not jti:
            raise _invalid("claims")
        return AccessClaims(
            subject=_uuid(payload["sub"]),
            session_id=_uuid(payload["sid"]),
            issued_at=issued_at,
            expires_at=expires_at,
            jti=jti,
        )


def _numeric_date(value: object) -> datetime:
    # Ours are whole seconds; bool is an int in Python and must not pass.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid("claims")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise _invalid("claims") from None


def _uuid(value: object) -> UUID:
    if not isinstance(value, str):
        raise _invalid("claims")
    try:
        return UUID(value)
    except ValueError:
        raise _invalid("claims") from None
