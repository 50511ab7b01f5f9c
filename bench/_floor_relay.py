"""The floor of any Python relay on this machine: a chat completion passed through untouched.

``python -m bench._floor_relay PROVIDER_URL PORT`` serves ``POST /chat/completions`` on
127.0.0.1:PORT under uvicorn with Whalli's own server settings (``whalli serve``: uvloop, the
httptools protocol ``LeanHttpToolsProtocol``, no access log) and relays each request to the
provider through Whalli's own outbound client (``new_http_client``: httpx on ``Http11Transport``),
answering the provider's bytes as they come. It does nothing else: no authentication, no rate
limit, no database, no Redis, no parsing of the body or of the reply.

``bench_chat`` times it beside the direct requests and Whalli's ways. What it adds over direct is
what a Python ASGI relay costs here before any feature (two HTTP hops, two event loops, the
server and the client), so Whalli's overhead splits into that floor and Whalli's own work, and
a goal the floor already misses cannot be met by any change to Whalli's own code.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import uvicorn

from whalli.adapters.outbound_http import new_http_client
from whalli.entrypoints.http.asgi import GC_THRESHOLDS
from whalli.entrypoints.http.lean_protocol import LeanHttpToolsProtocol

_SSE_HEAD = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class Relay:
    """The ASGI app: the body read whole, sent on, the answer's body relayed as it arrives."""

    def __init__(self, provider: str) -> None:
        self.provider = provider.rstrip("/")
        self.client = new_http_client(
            timeout=60.0, max_connections=4000, max_keepalive_connections=2000
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: nothing to set up
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {"content-type": "application/json"}
        for name, value in scope["headers"]:
            if name == b"authorization":
                headers["authorization"] = value.decode("latin-1")
        request = self.client.build_request(
            "POST", f"{self.provider}/chat/completions", content=body, headers=headers
        )
        upstream = await self.client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status_code,
                    "headers": _SSE_HEAD,
                }
            )
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await upstream.aclose()


def main() -> None:
    provider, port = sys.argv[1], int(sys.argv[2])
    config = uvicorn.Config(
        Relay(provider),
        host="127.0.0.1",
        port=port,
        http=LeanHttpToolsProtocol,
        loop="uvloop",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    # the collector as Whalli's server sets it (asgi.py), so the two differ only in their work
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.Server(config).run()  # until SIGTERM or SIGINT


if __name__ == "__main__":
    main()
