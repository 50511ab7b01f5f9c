"""``JwtAccessTokenIssuer.verify`` decodes tokens itself (for speed): for any token, hand-built
or mangled, it must decide exactly as PyJWT's ``decode`` with the same options did, refusal
reason included. The oracle below is the PyJWT-based verification it replaced."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.identity.test_access_tokens import AUDIENCE, ISSUER, OTHER_SECRET, SECRET
from whalli.adapters.crypto.jwt_tokens import (
    _ALLOWED_HEADERS,
    _REQUIRED_CLAIMS,
    ALGORITHM,
    MAX_TOKEN_LENGTH,
    TYP_HEADER,
    JwtAccessTokenIssuer,
)
from whalli.adapters.memory.clock import ManualClock
from whalli.domain.model.errors import InvalidToken

CLOCK = ManualClock()
NOW = int(CLOCK.now().timestamp())
TOKENS = JwtAccessTokenIssuer(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, clock=CLOCK)
KEYED = JwtAccessTokenIssuer(
    secret=SECRET, issuer=ISSUER, audience=AUDIENCE, clock=CLOCK, key_id="k1"
)
_PYJWT_ERRORS: list[tuple[type[Exception], str]] = [
    (jwt.InvalidAlgorithmError, "algorithm"),
    (jwt.InvalidSignatureError, "signature"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.MissingRequiredClaimError, "claims"),
    (jwt.DecodeError, "malformed"),
    (jwt.PyJWTError, "claims"),
]


def oracle(issuer: JwtAccessTokenIssuer, key_id: str | None, token: str) -> str:
    """What the PyJWT-based ``verify`` answered: ``ok`` or the refusal's reason."""
    if not 0 < len(token) <= MAX_TOKEN_LENGTH or not token.isascii() or token.count(".") != 2:
        return "malformed"
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return "malformed"
    if not set(header) <= _ALLOWED_HEADERS:
        return "header"
    if header.get("alg") != ALGORITHM:
        return "algorithm"
    if header.get("typ") != TYP_HEADER:
        return "header"
    if "kid" in header and (key_id is None or header["kid"] != key_id):
        return "header"
    try:
        payload = jwt.decode(
            token, key=SECRET, algorithms=[ALGORITHM], issuer=ISSUER, audience=AUDIENCE,
            options={
                "verify_signature": True, "require": _REQUIRED_CLAIMS, "verify_aud": True,
                "strict_aud": True, "verify_iss": True, "verify_sub": True,
                "verify_jti": True, "verify_exp": False, "verify_nbf": False,
                "verify_iat": False,
            },
        )  # fmt: skip
    except Exception as e:
        return next(reason for kind, reason in _PYJWT_ERRORS if isinstance(e, kind))
    try:
        issuer._claims(payload)  # the time, type and id checks both share
    except InvalidToken as e:
        return str(e.details["reason"])
    return "ok"


def verdict(issuer: JwtAccessTokenIssuer, token: str) -> str:
    try:
        issuer.verify(token)
    except InvalidToken as e:
        return str(e.details["reason"])
    return "ok"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(header: object, payload: object, key: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def good_payload() -> dict[str, Any]:
    return {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "01890000-0000-7000-8000-000000000001",
        "sid": "01890000-0000-7000-8000-000000000002", "jti": "j", "iat": NOW, "nbf": NOW,
        "exp": NOW + 600, "token_type": "access",
    }  # fmt: skip


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, NOW + 10_000), st.text(max_size=5),
    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=2), st.none()),
    st.sampled_from([ISSUER, AUDIENCE, "access", "refresh", ALGORITHM, TYP_HEADER, "k1", "b64"]),
)  # fmt: skip
HEADER_NAMES = st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jku", "x5c", "zip"])
CLAIM_NAMES = st.sampled_from([*_REQUIRED_CLAIMS, "extra"])


@st.composite
def headers(draw: st.DrawFn) -> object:
    header: dict[str, Any] = {"alg": ALGORITHM, "typ": TYP_HEADER}
    for name in draw(st.lists(HEADER_NAMES, max_size=3)):
        header[name] = draw(ODD_VALUES)
    for name in draw(st.lists(st.sampled_from(sorted(header)), max_size=1)):
        del header[name]
    return draw(st.one_of(st.just(header), st.just(header), ODD_VALUES))


@st.composite
def payloads(draw: st.DrawFn) -> object:
    payload = good_payload()
    for name in draw(st.lists(CLAIM_NAMES, max_size=3)):
        payload[name] = draw(ODD_VALUES)
    for name in draw(st.lists(st.sampled_from(sorted(payload)), max_size=1)):
        del payload[name]
    return draw(st.one_of(st.just(payload), st.just(payload), ODD_VALUES))


@st.composite
def mangled(draw: st.DrawFn, token: str) -> str:
    """``token`` with a few characters replaced, inserted or removed, or padding added."""
    chars = list(token)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "pad"]))
        piece = draw(st.sampled_from(list("Aa_-+/=!.0 ")))
        if action == "pad":
            part = draw(st.integers(0, 2))
            parts = "".join(chars).split(".")
            if part < len(parts):
                parts[part] += "=" * draw(st.integers(1, 3))
            chars = list(".".join(parts))
        elif action == "insert":
            chars.insert(at, piece)
        elif chars and at < len(chars):
            if action == "replace":
                chars[at] = piece
            else:
                del chars[at]
    return "".join(chars)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), header=headers(), payload=payloads(), right_key=st.booleans())
def test_verify_decides_every_token_as_pyjwt_did(
    data: st.DataObject, header: object, payload: object, right_key: bool
) -> None:
    token = signed(header, payload, SECRET if right_key else OTHER_SECRET)
    token = data.draw(st.one_of(st.just(token), mangled(token)))
    for issuer, key_id in ((TOKENS, None), (KEYED, "k1")):
        assert verdict(issuer, token) == oracle(issuer, key_id, token), token


HEADER = {"alg": ALGORITHM, "typ": TYP_HEADER}


@pytest.mark.parametrize(
    "token",
    [
        signed(HEADER, good_payload(), SECRET),
        signed({"alg": ALGORITHM, "typ": TYP_HEADER, "kid": 7}, good_payload(), SECRET),
        signed({"alg": ALGORITHM, "typ": TYP_HEADER, "crit": ["b64"], "b64": True}, {}, SECRET),
        signed({"alg": ALGORITHM, "typ": TYP_HEADER, "crit": []}, good_payload(), SECRET),
        signed({"alg": ALGORITHM, "typ": TYP_HEADER, "b64": False}, good_payload(), SECRET),
        signed(HEADER, {**good_payload(), "aud": ""}, SECRET),
        signed(HEADER, {**good_payload(), "aud": [AUDIENCE]}, SECRET),
        signed(HEADER, {**good_payload(), "sub": 1}, SECRET),
        signed(HEADER, [1, 2], SECRET),
    ],
)
def test_known_edges_are_decided_as_pyjwt_did(token: str) -> None:
    assert verdict(TOKENS, token) == oracle(TOKENS, None, token)


def test_a_signature_segment_with_its_trailing_bits_set_is_malformed_as_in_pyjwt() -> None:
    token = signed({"alg": ALGORITHM, "typ": TYP_HEADER}, good_payload(), SECRET)
    assert verdict(TOKENS, token) == "ok"
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # the 43-character SHA-256 segment's last character carries 2 unused bits
    sibling = alphabet[alphabet.index(last) ^ 1]
    forged = token[:-1] + sibling
    assert verdict(TOKENS, forged) == oracle(TOKENS, None, forged) == "malformed"
