"""JWT access tokens: a round trip, and every forged or unusable token refused as InvalidToken.

Forged tokens are built by hand (base64url JSON, HMAC signature) or with PyJWT. The hand-built
ones are first shown to verify when nothing is wrong with them, so each refusal below is caused
by the one thing the test changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.memory.clock import ManualClock
from whalli.domain.model.errors import InvalidToken, Unauthenticated
from whalli.domain.model.tokens import AccessClaims

SECRET = b"k" * 16 + b"0123456789abcdef"  # 32 bytes
OTHER_SECRET = b"x" * 32
ISSUER = "whalli"
AUDIENCE = "whalli-api"
USER = uuid.UUID("01890000-0000-7000-8000-000000000001")
SESSION = uuid.UUID("01890000-0000-7000-8000-000000000002")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tokens(clock: ManualClock) -> JwtAccessTokenIssuer:
    return JwtAccessTokenIssuer(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def hs(key: bytes, signing_input: str, digest: Any = hashlib.sha256) -> str:
    return b64(hmac.new(key, signing_input.encode("ascii"), digest).digest())


def forge(
    payload: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    key: bytes = SECRET,
    digest: Any = hashlib.sha256,
) -> str:
    head = {"alg": "HS256", "typ": "at+jwt"} if header is None else header
    signing_input = f"{b64json(head)}.{b64json(payload)}"
    return f"{signing_input}.{hs(key, signing_input, digest)}"


def claims_payload(clock: ManualClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(USER),
        "sid": str(SESSION),
        "jti": "jti-1",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "token_type": "access",
    }
    payload.update(changes)
    return payload


def assert_refused(tokens: JwtAccessTokenIssuer, token: str, match: str) -> InvalidToken:
    with pytest.raises(InvalidToken, match=match) as info:
        tokens.verify(token)
    error = info.value
    assert error.code == "invalid_token"
    # Nothing of the token in the message, the details or a chained driver exception.
    for part in (p for p in token.split(".") if len(p) >= 8):
        assert part not in str(error)
        assert part not in repr(error.details)
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None
    return error


# --- what works --------------------------------------------------------------------------------
def test_issued_claims_verify_back_to_the_same_claims(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    claims = AccessClaims.new(
        subject=USER, session_id=SESSION, jti="jti-1", now=clock.now(), ttl=tokens.ttl
    )
    token = tokens.issue(claims)
    assert tokens.verify(token) == claims
    assert claims.expires_at - claims.issued_at == timedelta(minutes=15)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt"}


@given(
    subject=st.uuids(),
    session_id=st.uuids(),
    jti=st.text(min_size=1, max_size=64),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    ttl_s=st.integers(min_value=1, max_value=900),
)
def test_any_claims_survive_a_round_trip(
    subject: uuid.UUID, session_id: uuid.UUID, jti: str, now: datetime, ttl_s: int
) -> None:
    clock = ManualClock(now)
    issuer = JwtAccessTokenIssuer(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    claims = AccessClaims.new(
        subject=subject, session_id=session_id, jti=jti, now=now, ttl=timedelta(seconds=ttl_s)
    )
    assert issuer.verify(issuer.issue(claims)) == claims


def test_claims_are_whole_seconds_and_need_an_aware_time_a_jti_and_a_ttl() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    claims = AccessClaims.new(subject=USER, session_id=SESSION, jti="j", now=now)
    assert claims.issued_at == now.replace(microsecond=0)
    assert claims.token_type == "access"
    with pytest.raises(ValueError, match="naive"):
        AccessClaims.new(subject=USER, session_id=SESSION, jti="j", now=now.replace(tzinfo=None))
    with pytest.raises(ValueError, match="needs a jti"):
        AccessClaims.new(subject=USER, session_id=SESSION, jti="", now=now)
    with pytest.raises(ValueError, match="at least one second"):
        AccessClaims.new(subject=USER, session_id=SESSION, jti="j", now=now, ttl=timedelta(0))


def test_a_hand_built_token_with_nothing_wrong_verifies(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    claims = tokens.verify(forge(claims_payload(clock)))
    assert (claims.subject, claims.session_id, claims.jti) == (USER, SESSION, "jti-1")


def test_a_configured_key_id_is_issued_and_required(clock: ManualClock) -> None:
    keyed = JwtAccessTokenIssuer(
        secret=SECRET, issuer=ISSUER, audience=AUDIENCE, clock=clock, key_id="2030-01"
    )
    claims = AccessClaims.new(subject=USER, session_id=SESSION, jti="j", now=clock.now())
    assert keyed.verify(keyed.issue(claims)) == claims
    other_kid = forge(claims_payload(clock), header={"alg": "HS256", "typ": "at+jwt", "kid": "x"})
    assert_refused(keyed, other_kid, "header is not accepted")


def test_a_token_is_still_accepted_within_the_30_second_leeway(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    token = forge(claims_payload(clock))
    clock.advance(timedelta(seconds=900 + 29))
    assert tokens.verify(token).subject == USER


# --- algorithms -----------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_an_unsigned_alg_none_token_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, alg: str
) -> None:
    token = f"{b64json({'alg': alg, 'typ': 'at+jwt'})}.{b64json(claims_payload(clock))}."
    assert_refused(tokens, token, "algorithm is not accepted")


def test_an_alg_none_header_with_a_valid_hs256_signature_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    token = forge(claims_payload(clock), header={"alg": "none", "typ": "at+jwt"})
    assert_refused(tokens, token, "algorithm is not accepted")


def test_an_hs512_token_signed_with_the_right_secret_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    token = forge(
        claims_payload(clock), header={"alg": "HS512", "typ": "at+jwt"}, digest=hashlib.sha512
    )
    assert_refused(tokens, token, "algorithm is not accepted")


def test_an_rs256_token_signed_with_an_attackers_rsa_key_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        claims_payload(clock), private_key, algorithm="RS256", headers={"typ": "at+jwt"}
    )
    assert_refused(tokens, token, "algorithm is not accepted")


def test_an_rs256_header_over_an_hmac_made_with_the_right_secret_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    # Algorithm confusion: the header must not choose how the key is used.
    token = forge(claims_payload(clock), header={"alg": "RS256", "typ": "at+jwt"})
    assert_refused(tokens, token, "algorithm is not accepted")


def test_an_hs256_token_keyed_with_a_public_rsa_key_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    # The classic confusion attack: HMAC "signed" with a public key the attacker can read.
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = forge(claims_payload(clock), key=public_pem)
    assert_refused(tokens, token, "signature is invalid")


# --- headers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("jwk", {"kty": "oct", "k": b64(OTHER_SECRET)}),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIBszCCAVmgAwIBAgIU"]),
        ("kid", "https://attacker.example/key"),
        ("kid", "../../../../dev/null"),
    ],
)
def test_a_key_location_or_extension_header_is_refused_even_when_correctly_signed(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, name: str, value: object
) -> None:
    header = {"alg": "HS256", "typ": "at+jwt", name: value}
    assert_refused(tokens, forge(claims_payload(clock), header=header), "header is not accepted")


@pytest.mark.parametrize(
    "extension",
    [{"crit": ["exp"], "exp": 1}, {"b64": False}, {"crit": ["b64"], "b64": False}],
    ids=["unknown-crit", "b64-without-crit", "b64-unencoded-payload"],
)
def test_a_critical_extension_header_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, extension: dict[str, object]
) -> None:
    # PyJWT refuses some of these while reading the header already, the rest are not allowed.
    header = {"alg": "HS256", "typ": "at+jwt", **extension}
    assert_refused(tokens, forge(claims_payload(clock), header=header), "malformed|header")


@pytest.mark.parametrize("typ", ["JWT", "refresh+jwt", None])
def test_a_token_not_typed_as_an_access_token_in_its_header_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, typ: str | None
) -> None:
    header: dict[str, Any] = {"alg": "HS256"} if typ is None else {"alg": "HS256", "typ": typ}
    assert_refused(tokens, forge(claims_payload(clock), header=header), "header is not accepted")


# --- signature ------------------------------------------------------------------------------------
def test_a_token_signed_with_another_secret_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    assert_refused(tokens, forge(claims_payload(clock), key=OTHER_SECRET), "signature is invalid")


def test_a_token_whose_signature_was_tampered_with_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    token = forge(claims_payload(clock))
    head, body, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert_refused(tokens, f"{head}.{body}.{flipped}", "signature is invalid")


def test_a_token_whose_claims_were_changed_after_signing_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    head, _, signature = forge(claims_payload(clock)).split(".")
    other_body = b64json(claims_payload(clock, sub=str(uuid.uuid4())))
    assert_refused(tokens, f"{head}.{other_body}.{signature}", "signature is invalid")


# --- time -----------------------------------------------------------------------------------------
def test_an_expired_token_is_refused(tokens: JwtAccessTokenIssuer, clock: ManualClock) -> None:
    token = forge(claims_payload(clock))
    clock.advance(timedelta(seconds=900 + 30))
    assert_refused(tokens, token, "has expired")


def test_a_token_not_valid_before_a_later_time_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    now = int(clock.now().timestamp())
    assert_refused(tokens, forge(claims_payload(clock, nbf=now + 31)), "not valid yet")


def test_a_token_issued_in_the_future_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    now = int(clock.now().timestamp())
    token = forge(claims_payload(clock, iat=now + 31, nbf=now))
    assert_refused(tokens, token, "not valid yet")


# --- claims ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("audience", ["other-api", "", ["whalli-api", "other-api"], ["whalli-api"]])
def test_a_token_for_another_audience_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, audience: object
) -> None:
    token = forge(claims_payload(clock, aud=audience))
    assert_refused(tokens, token, "another audience|claims are missing")


def test_a_token_from_another_issuer_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    assert_refused(tokens, forge(claims_payload(clock, iss="evil")), "issued by someone else")


@pytest.mark.parametrize("token_type", ["refresh", "id", ""])
def test_a_token_whose_type_claim_is_not_access_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, token_type: str
) -> None:
    token = forge(claims_payload(clock, token_type=token_type))
    assert_refused(tokens, token, "not an access token")


@pytest.mark.parametrize(
    "missing", ["exp", "nbf", "iat", "iss", "aud", "sub", "sid", "jti", "token_type"]
)
def test_a_token_missing_a_required_claim_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, missing: str
) -> None:
    payload = claims_payload(clock)
    del payload[missing]
    assert_refused(tokens, forge(payload), "claims are missing or invalid")


@pytest.mark.parametrize(
    "change",
    [
        {"exp": True},
        {"exp": "later"},
        {"exp": 1.5e12},
        {"iat": 10**20},
        {"sub": "not-a-uuid"},
        {"sub": 42},
        {"sid": "not-a-uuid"},
        {"jti": ""},
        {"jti": 7},
    ],
)
def test_a_token_with_an_ill_typed_claim_is_refused(
    tokens: JwtAccessTokenIssuer, clock: ManualClock, change: dict[str, object]
) -> None:
    assert_refused(tokens, forge(claims_payload(clock, **change)), "claims are missing or invalid")


# --- malformed ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "....",
        "é.é.é",
        "Bearer abc.def.ghi",
        f"{b64(b'not json')}.{b64json({})}.c2ln",
        f"{b64json(['alg', 'HS256'])}.{b64json({})}.c2ln",
        f"{b64json({'alg': 'HS256', 'typ': 'at+jwt'})}.{b64(b'[1,2]')}.c2ln",
        "x" * 5000 + ".y.z",
    ],
    ids=[
        "empty",
        "one-part",
        "two-parts",
        "junk-parts",
        "dots",
        "non-ascii",
        "with-scheme",
        "header-not-json",
        "header-not-object",
        "payload-not-object",
        "oversized",
    ],
)
def test_a_malformed_token_is_refused(tokens: JwtAccessTokenIssuer, token: str) -> None:
    assert_refused(tokens, token, "malformed|signature is invalid")


def test_the_refusal_message_is_generic(tokens: JwtAccessTokenIssuer, clock: ManualClock) -> None:
    error = assert_refused(tokens, forge(claims_payload(clock), key=OTHER_SECRET), "signature")
    assert isinstance(error, Unauthenticated)
    assert error.details == {"reason": "signature"}


# --- construction and issuing ---------------------------------------------------------------------
def test_a_secret_shorter_than_32_bytes_is_refused(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtAccessTokenIssuer(secret=b"s" * 31, issuer=ISSUER, audience=AUDIENCE, clock=clock)


def test_a_leeway_over_30_seconds_is_refused(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="leeway"):
        JwtAccessTokenIssuer(
            secret=SECRET, issuer=ISSUER, audience=AUDIENCE, clock=clock,
            leeway=timedelta(seconds=31),
        )  # fmt: skip


def test_claims_longer_lived_than_the_ttl_are_not_issued(
    tokens: JwtAccessTokenIssuer, clock: ManualClock
) -> None:
    claims = AccessClaims.new(
        subject=USER, session_id=SESSION, jti="j", now=clock.now(), ttl=timedelta(hours=1)
    )
    with pytest.raises(ValueError, match="at most the ttl"):
        tokens.issue(claims)


def test_the_issuer_never_shows_its_secret(tokens: JwtAccessTokenIssuer) -> None:
    assert SECRET.decode() not in repr(tokens)
