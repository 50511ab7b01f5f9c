"""What the provider adapters share: PKCE-aware requests with timeouts, error translation.

Nothing here logs or formats a request or response body: token responses carry access tokens
and token requests the client secret. Error reasons are fixed strings or a provider's OAuth
error code (a short ``[a-z_]`` word from RFC 6749's vocabulary), never the raw answer.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import httpx
import msgspec

from whalli.domain.model.errors import OAuthFailed, ServiceUnavailable

DEFAULT_TIMEOUT_S = 10.0
T = TypeVar("T")
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class OAuthError(msgspec.Struct):
    """RFC 6749 section 5.2 error body (GitHub sends it with status 200)."""

    error: str


def safe_error_code(value: object) -> str:
    """The provider's error code if it looks like one, else a placeholder (never echo junk)."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else "unknown_error"


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    timeout_s: float,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; unreachable or failing (5xx) providers raise ``ServiceUnavailable``."""
    try:
        response = await client.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.TimeoutException as e:
        raise ServiceUnavailable(f"{provider} did not answer in time") from e
    except httpx.HTTPError as e:
        # Only the exception type: httpx messages can include the URL, and ours carry no secret
        # in URLs, but a type name is all an operator needs here.
        raise ServiceUnavailable(f"{provider} is unreachable ({type(e).__name__})") from None
    if response.status_code >= 500:
        raise ServiceUnavailable(f"{provider} failed (HTTP {response.status_code})")
    return response


def decode(response: httpx.Response, type_: type[T], *, provider: str, what: str) -> T:
    """Decode a JSON answer into ``type_``; anything else is ``OAuthFailed``."""
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise OAuthFailed(f"{provider} sent an unexpected {what}.") from None


def refused(response: httpx.Response, *, provider: str, what: str) -> OAuthFailed:
    """The error for a 4xx answer (or a 200 carrying an OAuth ``error``)."""
    try:
        code = safe_error_code(msgspec.json.decode(response.content, type=OAuthError).error)
    except (msgspec.DecodeError, msgspec.ValidationError):
        code = f"http_{response.status_code}"
    return OAuthFailed(f"{provider} refused the {what} ({code}).", reason=code)
