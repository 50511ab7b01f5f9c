"""Whalli's outbound HTTP client: httpx, sending through :class:`~whalli.adapters.http11.
Http11Transport` instead of httpcore.

Everything above the transport stays httpx's: requests, responses, headers, decoding, errors,
timeouts. Measured (a loop streaming 20-token replies from ``bench/_fake_provider.py``, 16 at
a time, ``time.process_time()`` per reply; and 500 held streamed requests, RSS per request):
1.32-1.44 ms of CPU per reply instead of 1.79-1.98 ms through httpcore (on its asyncio network
backend, itself a fifth below httpcore's default anyio one), and 12.8-13.4 KiB per held request
instead of 20.3-24.6 KiB.

Proxies configured by the environment (``HTTPS_PROXY``...) keep httpx's own transports: only
the client's default transport is replaced.

The client keeps no cookies (``_NoCookies``). One client serves every user, so a cookie one
server set while answering one user's request (a URL a user gave: an image to fetch, a
self-hosted provider's base URL) would go back with every other user's requests to that server,
which could then tell users apart and link their requests. No API Whalli calls needs a cookie
(they authenticate by header). It also saves the work httpx does per response to look for
cookies (a urllib request and response built around each one: ~0.1 ms of CPU per provider
request, measured with cProfile on ``/v1``).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping

import httpx

from whalli.adapters.http11 import Http11Transport


def new_http_client(
    *,
    timeout: float | httpx.Timeout | None,
    max_connections: int,
    max_keepalive_connections: int,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (redirects not followed) whose default transport is
    :class:`Http11Transport`, with httpx's TLS settings (``verify``, ``SSL_CERT_FILE``...) and
    the given pool limits."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_keepalive_connections
    )
    client = httpx.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, verify=verify
    )
    # httpx builds its proxy mounts only for a client given no transport; the default one it
    # made is replaced (tests/integration/test_outbound_http.py checks which one is in use).
    client._transport = Http11Transport(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=5.0,  # httpx's own default
    )
    client._cookies = _NoCookies()  # (httpx's setter would wrap it in a plain ``Cookies``)
    return client


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: cookies a server sets are dropped, none are sent."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None

    def update(self, cookies: httpx._types.CookieTypes | None = None) -> None:  # type: ignore[override]
        return None


@contextlib.asynccontextmanager
async def streamed(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: httpx.Timeout,  # noqa: ASYNC109 - httpx's, per wait, as client.stream takes it
) -> AsyncIterator[httpx.Response]:
    """``client.stream(method, url, ...)``, the response closed on leaving, as httpx answers it.

    A client made by ``new_http_client`` (its own transport, no proxy mounted, no hooks, no
    auth, no base URL), asked for a URL without credentials, sends straight to its transport:
    the same ``httpx.Request`` (the client's default headers under ``headers``) and
    ``httpx.Response``, without the client's layers of auth flow, redirect handling, cookie
    jar (``_NoCookies``: nothing to do), event hooks and logging, none of which it uses.
    Those layers cost ~55 µs of CPU per request (a loop of 20,000 requests to a transport
    answering at once: 78.6 µs through ``client.stream``, 23.8 µs this way), on every
    provider request of every reply. Any other client, and a URL with an ``@`` (a base URL's
    ``user:password@``, which httpx's auth layer sends as ``Authorization: Basic``), goes
    through ``client.stream``.
    """
    transport = client._transport
    if (
        "@" in url  # credentials in the URL: httpx's auth layer sends them (Basic)
        or type(transport) is not Http11Transport
        or client._mounts
        or client.auth is not None
        or client.base_url.raw_host
        or client.event_hooks["request"]
        or client.event_hooks["response"]
    ):
        async with client.stream(
            method, url, content=content, headers=headers, timeout=timeout
        ) as response:
            yield response
        return
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    merged = httpx.Headers(client.headers)
    merged.update(headers)
    request = httpx.Request(
        method, url, headers=merged, content=content, extensions={"timeout": timeout.as_dict()}
    )
    try:
        response = await transport.handle_async_request(request)
    except httpx.RequestError as e:
        e.request = request  # as the client's ``request_context`` names it
        raise
    response.request = request
    try:
        yield response
    finally:
        await response.aclose()
