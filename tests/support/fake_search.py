"""Loopback web search APIs: SearXNG's JSON API (``GET /search?q=…&format=json``) and Brave
Search (``GET /res/v1/web/search?q=…&count=…`` with ``X-Subscription-Token``).

A real HTTP/1.1 server (stdlib, in a thread, so that a worker in another process reaches it
too). Unless a test scripted the next answers (``script``), it plays the real APIs: SearXNG
answers 403 to a format its settings do not allow (anything but ``json`` here), Brave 401 with
its error body to a wrong or missing token and 422 to a missing query; else the results
registered for the query (``hits``, as ``(url, title, snippet)``; Brave gets the snippet with
its ``<strong>`` marks), or ``default_hits(query)``. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback_http import LoopbackHttpServer

BRAVE_KEY = "BSA-test-0123456789abcdef"
Hit = tuple[str, str, str]


def default_hits(query: str) -> list[Hit]:
    slug = "-".join(query.lower().split())
    return [
        (f"https://example.com/{slug}/{n}", f"{query} result {n}", f"About {query}, part {n}.")
        for n in range(1, 4)
    ]


@dataclass(frozen=True)
class RecordedSearch:
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # names in lower case


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # JSON (a dict) or bytes
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0  # how long the answer waits (cut short when the server stops)


class FakeSearchServer:
    def __init__(self, brave_key: str = BRAVE_KEY) -> None:
        self.brave_key = brave_key
        self.hits: dict[str, list[Hit]] = {}
        self.requests: list[RecordedSearch] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = LoopbackHttpServer(_handler(self))

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def brave_base_url(self) -> str:
        return f"{self._http.url}/res/v1"

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def start(self) -> Self:
        self._http.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._http.stop()

    def hold(self, answer: Answer) -> bool:
        """Wait as ``answer`` asks before it is sent; False: the server stopped meanwhile (its
        client is gone: nothing is sent)."""
        return answer.hold_s <= 0 or not self._stopping.wait(answer.hold_s)

    def answer(self, request: RecordedSearch) -> Answer:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        if request.path == "/search":
            return self._searxng(request)
        if request.path == "/res/v1/web/search":
            return self._brave(request)
        return Answer(404, b"<html>Not Found</html>", {"content-type": "text/html"})

    def _found(self, query: str) -> list[Hit]:
        return self.hits.get(query, default_hits(query))

    def _searxng(self, request: RecordedSearch) -> Answer:
        if request.params.get("format") != "json":
            return Answer(403, b"<html>403 Forbidden</html>", {"content-type": "text/html"})
        query = request.params.get("q", "")
        results = [
            {"url": url, "title": title, "content": snippet, "engine": "duckduckgo",
             "engines": ["duckduckgo"], "score": 1.0, "category": "general"}
            for url, title, snippet in self._found(query)
        ]  # fmt: skip
        body = {"query": query, "number_of_results": 0, "results": results, "answers": [],
                "infoboxes": [], "suggestions": [], "unresponsive_engines": []}  # fmt: skip
        return Answer(200, body)

    def _brave(self, request: RecordedSearch) -> Answer:
        if request.headers.get("x-subscription-token") != self.brave_key:
            error = {"id": "x", "status": 401, "code": "SUBSCRIPTION_TOKEN_INVALID",
                     "detail": "The provided subscription token is invalid."}  # fmt: skip
            return Answer(401, {"type": "ErrorResponse", "error": error, "time": 0})
        query = request.params.get("q", "")
        if not query:
            return Answer(422, {"type": "ErrorResponse", "error": {"status": 422}})
        count = int(request.params.get("count", "20"))
        results = [
            {"type": "search_result", "title": title, "url": url, "is_source_local": False,
             "description": snippet.replace(query, f"<strong>{query}</strong>"),
             "language": "en", "family_friendly": True}
            for url, title, snippet in self._found(query)[:count]
        ]  # fmt: skip
        body = {"type": "search", "query": {"original": query},
                "web": {"type": "search", "results": results, "family_friendly": True}}  # fmt: skip
        return Answer(200, body)


def _handler(server: FakeSearchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = server.answer(RecordedSearch(parts.path, params, headers))
            if not server.hold(answer):
                return
            if isinstance(answer.body, bytes):
                content = answer.body
                kind = answer.headers.get("content-type", "application/octet-stream")
            else:
                content, kind = json.dumps(answer.body).encode(), "application/json"
            self.send_response(answer.status)
            self.send_header("content-type", kind)
            for name, value in answer.headers.items():
                if name != "content-type":
                    self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
