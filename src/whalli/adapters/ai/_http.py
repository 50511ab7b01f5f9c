"""One streaming POST to a provider, as SSE events, with httpx failures turned into
``ProviderError`` (see ``_streaming`` for which of them are retried)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec

from whalli.adapters.ai._halves import edge_halves_kept, valid_text
from whalli.adapters.ai._sse import MAX_EVENT_CHARS, EventTooLarge, SseDecoder, SseEvent
from whalli.adapters.ai._streaming import StreamPolicy, provider_error, stream_cut
from whalli.adapters.ai._upstream_errors import error_code, request_secrets, upstream_message
from whalli.adapters.outbound_http import streamed
from whalli.domain.model.errors import ProviderError

# Statuses by which a provider refuses this very request as invalid (not its key or model)
_REQUEST_AT_FAULT = frozenset({400, 413, 422})
# Bytes of a non-2xx answer's body read for its error code and message: a body without end
# (a broken proxy) is not held, and the status is reported at once
MAX_ERROR_BODY = 64 * 1024
# Content types that are never a stream: a web page (a base URL reaching a web app)
_PAGES = frozenset({"text/html", "application/xhtml+xml"})


async def sse_post(
    http: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    policy: StreamPolicy,
    whole: Callable[[dict[str, Any]], list[str]] | None = None,
    max_whole_bytes: int = MAX_EVENT_CHARS,
) -> AsyncGenerator[SseEvent, None]:
    """POST ``body`` (JSON) and yield the SSE events of a 2xx answer as they arrive.

    A 2xx ``application/json`` answer (a server that ignored ``stream: true``) is read whole,
    up to ``max_whole_bytes`` (past them it is refused as too large to read, as an event of a
    stream past ``MAX_EVENT_CHARS`` is), and, with ``whole``, yielded as the events' ``data``
    that ``whole`` makes of it (the stream that would have said the same); without ``whole``
    it is read as events, as any other type (``text/plain`` included) but a web page's: a 2xx
    ``text/html`` answer, or one of a type other than ``text/event-stream`` that held no event
    at all, is not a stream (a wrong base URL), a ``protocol`` error naming its type, not
    retried. Of a non-2xx answer, the first ``MAX_ERROR_BODY`` bytes are read.
    Closing the generator closes the response (and its connection) at once.
    """
    # Reads are bounded by the caller's first-token and idle timeouts, not by httpx.
    timeout = httpx.Timeout(policy.connect_timeout, read=None)
    request_headers = {
        "content-type": "application/json",
        "accept": "text/event-stream",
        # An uncompressed stream: a compressing proxy in front of a provider may hold tokens
        # back to fill its compression buffer. A server that compresses anyway is still read.
        "accept-encoding": "identity",
        # an adapter's own win, whatever case it writes their names in (one of each sent)
        **{name.lower(): value for name, value in headers.items()},
    }
    try:
        async with streamed(
            http, "POST", url, content=body, headers=request_headers, timeout=timeout
        ) as response:
            if not response.is_success:  # redirects are not followed: a 3xx is a bad base URL
                content, _ = await _prefix(response, MAX_ERROR_BODY)
                raise status_error(
                    provider, response.status_code, response.headers, content,
                    secrets=request_secrets(headers),
                )  # fmt: skip
            content_type = response.headers.get("content-type", "")
            media_type = content_type.partition(";")[0].strip().lower()
            if whole is not None and media_type == "application/json":
                content, ended = await _prefix(response, max_whole_bytes)
                if not ended:
                    raise EventTooLarge(f"an answer of more than {max_whole_bytes} bytes")
                document = decode_json(provider, content.decode(errors="replace"))
                for data in whole(document):
                    yield SseEvent("message", data)
                return
            if media_type in _PAGES:
                raise not_a_stream(provider, media_type)
            decoder, held_any = SseDecoder(), False
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    held_any = True
                    yield event
                    del event  # not kept while the next read is awaited (a held reply waits there)
            for event in decoder.finish():
                held_any = True
                yield event
            if not held_any and media_type not in ("", "text/event-stream"):
                raise not_a_stream(provider, media_type)
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        raise stream_cut(provider) from e
    except EventTooLarge as e:
        raise provider_error(
            f"The {provider} provider sent {e}: too large to read.",
            provider=provider,
            kind="protocol",
            retryable=False,
        ) from e
    except httpx.TimeoutException as e:
        raise provider_error(
            f"Timed out connecting to the {provider} provider.",
            provider=provider,
            kind="connection",
            retryable=True,
        ) from e
    except httpx.LocalProtocolError as e:  # not sent: asking again would not help
        raise provider_error(
            f"The request to the {provider} provider could not be sent (an illegal header "
            "value: check its API key).",
            provider=provider,
            kind="protocol",
            retryable=False,
        ) from e
    except httpx.HTTPError as e:
        raise provider_error(
            f"Could not reach the {provider} provider ({type(e).__name__}).",
            provider=provider,
            kind="connection",
            retryable=True,
        ) from e


async def _prefix(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body of ``response`` up to ``limit`` bytes, and whether it ended within them (the
    rest, if any, is left unread: closing the response drops its connection)."""
    read, size = [], 0
    async for chunk in response.aiter_bytes():
        read.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(read)[:limit], False
    return b"".join(read), True


def whole_limit(cap_chars: int) -> int:
    """The most bytes of a whole (non-stream) answer read when a reply may hold ``cap_chars``
    characters (``output_cap_chars``): twice them (room for JSON's escapes and the fields
    around the text; that cap already allows 32 characters a token), plus ``MAX_ERROR_BODY``
    for a reply asked to be short, and never more than ``MAX_EVENT_CHARS``."""
    return min(MAX_ERROR_BODY + 2 * cap_chars, MAX_EVENT_CHARS)


def not_a_stream(provider: str, media_type: str) -> ProviderError:
    """A 2xx answer that is no event stream (a web page): the base URL reaches something other
    than the provider's API. Asking it again would get the same page."""
    named = "".join(c for c in media_type[:64] if c.isprintable())
    return provider_error(
        f"The {provider} provider answered {named}, not an event stream: check its base URL.",
        provider=provider,
        kind="protocol",
        retryable=False,
    )


def status_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str] = (),
) -> ProviderError:
    """The error for a non-2xx answer. Only a request refused as invalid carries the provider's
    own message (sanitised, ``secrets`` the request's keys: see ``_upstream_errors``); every
    error has ``upstream_status``."""
    code = error_code(body)
    detail = f"HTTP {status}" + (f": {code}" if code else "")
    if status == 429:
        return provider_error(
            f"The {provider} provider is rate limiting requests ({detail}).",
            provider=provider,
            kind="rate_limited",
            retryable=True,
            retry_after=retry_after(headers),
            upstream_status=status,
        )
    if status >= 500:
        return provider_error(
            f"The {provider} provider failed ({detail}).",
            provider=provider,
            kind="server_error",
            retryable=True,
            retry_after=retry_after(headers),  # 503 and Anthropic's 529 may say when to retry
            upstream_status=status,
        )
    if status in _REQUEST_AT_FAULT:
        # this request is at fault (no other model may answer it instead): say why
        said = upstream_message(body, secrets)
        return provider_error(
            f"The {provider} provider rejected the request ({detail})"
            + (f": {said}" if said else "."),
            provider=provider,
            kind="invalid_request",
            retryable=False,
            upstream_status=status,
        )
    # 401, 403, 404: the provider's key or model is at fault (another model may answer); their
    # message is never passed on (a 401's may echo part of the key)
    return provider_error(
        f"The {provider} provider rejected the request ({detail}).",
        provider=provider,
        kind="rejected",
        retryable=False,
        upstream_status=status,
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or a date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return _finite(float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return _finite(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _finite(seconds: float) -> float | None:
    return max(0.0, seconds) if math.isfinite(seconds) else None


# Error types a stream may report mid-answer that trying again can cure.
_TRANSIENT = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "server_error", "rate_limit_exceeded"}
)


def stream_error(provider: str, payload: object, secrets: Sequence[str] = ()) -> ProviderError:
    """An error the provider reported inside a 2xx stream (an ``error`` event or chunk), with
    its message (sanitised, ``secrets`` the request's keys) when it has one."""
    code = error_code(payload)
    said = upstream_message(payload, secrets)
    return provider_error(
        f"The {provider} provider reported an error mid-stream"
        + (f" ({code})" if code else "")
        + (f": {said}" if said else "."),
        provider=provider,
        kind="upstream_error",
        retryable=code in _TRANSIENT,
    )


def obj(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: a provider's event read field by
    field never fails on a field of an unexpected type (it counts as missing)."""
    return value if isinstance(value, dict) else {}


def decode_json(provider: str, data: str, *, halves: bool = False) -> dict[str, Any]:
    """One SSE ``data`` payload as a JSON object (msgspec; ``_lenient`` only for what it
    refuses). With ``halves``, a string's lone surrogate at its very end (a high one) or start
    (a low one) is kept for ``_halves.SurrogateJoiner`` to pair with the next delta's, as a
    stream re-chunked by UTF-16 code units splits an emoji; every other one is U+FFFD."""
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        document = _lenient(data, halves)
    if not isinstance(document, dict):
        raise provider_error(
            f"The {provider} provider sent a malformed stream event.",
            provider=provider,
            kind="protocol",
            retryable=True,
        )
    return document


def _lenient(data: str, halves: bool = False) -> object:
    """``data`` as JSON that msgspec refuses but JSON allows, or ``None``: a lone surrogate
    escape (``"\\ud83d"``, half of an astral character, as a proxy that re-chunks text by
    UTF-16 code units sends it; RFC 8259 §8.2). Each lone half becomes U+FFFD (but the edge
    halves ``halves`` keeps, see ``decode_json``), so the text stays valid UTF-8 wherever it
    goes (streamed, stored). NaN and Infinity stay refused."""
    try:
        return _valid_text(json.loads(data, parse_constant=_refuse), halves)
    except (ValueError, RecursionError):
        return None


def _refuse(constant: str) -> object:
    raise ValueError(constant)


def _valid_text(value: object, halves: bool = False) -> object:
    if isinstance(value, str):
        return edge_halves_kept(value) if halves else valid_text(value)
    if isinstance(value, dict):
        return {valid_text(k): _valid_text(v, halves) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_text(v, halves) for v in value]
    return value
