"""A loopback Pwned Passwords range API, answering like Have I Been Pwned's.

``GET /range/{5 hex digits}`` answers ``text/plain`` lines ``{35-digit SUFFIX}:{COUNT}`` (upper
case, CRLF-separated) for the breached passwords (``breach(password, count)``) whose SHA-1
starts with that prefix. When the request has ``Add-Padding: true`` the answer also carries
``padding`` random suffixes of count 0, as the real service pads to hide the answer's size;
``padding_for(password)`` adds a count-0 line for that exact password, which a client must
not take for a breach. A malformed prefix is 400, ``failing = True`` makes it answer 503.
Every request's path and headers are recorded (``requests``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback_http import LoopbackHttpServer

_RANGE = re.compile(r"^/range/([0-9A-Fa-f]{5})$")


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True)
class RangeRequest:
    path: str
    headers: dict[str, str]  # names in lower case


class FakePwnedPasswords(LoopbackHttpServer):
    def __init__(self, padding: int = 50) -> None:
        self.padding = padding
        self.failing = False
        self.requests: list[RangeRequest] = []
        self._counts: dict[str, int] = {}  # full SHA-1 hex -> count
        self._lock = threading.Lock()
        super().__init__(_handler_for(self))

    def breach(self, password: str, count: int = 1) -> None:
        with self._lock:
            self._counts[sha1_hex(password)] = count

    def padding_for(self, password: str) -> None:
        self.breach(password, 0)

    def answer(self, prefix: str, padded: bool) -> str:
        prefix = prefix.upper()
        with self._lock:
            lines = [f"{h[5:]}:{n}" for h, n in self._counts.items() if h.startswith(prefix)]
        if padded:
            lines += [f"{secrets.token_hex(18)[:35].upper()}:0" for _ in range(self.padding)]
        return "\r\n".join(lines)


def _handler_for(server: FakePwnedPasswords) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest treats stray output as noise

        def _reply(self, status: int, text: str) -> None:
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.requests.append(RangeRequest(self.path, headers))
            if server.failing:
                self._reply(503, "Service Unavailable")
                return
            match = _RANGE.match(self.path)
            if match is None:
                self._reply(400, "The hash prefix was not in a valid format")
                return
            padded = headers.get("add-padding", "").lower() == "true"
            self._reply(200, server.answer(match.group(1), padded))

    return Handler
