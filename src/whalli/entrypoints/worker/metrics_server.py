"""The worker's Prometheus scrape endpoint: ``GET /metrics`` on its own small HTTP server.

A worker has no web server of its own, and its metric files live in its own container (sharing
``PROMETHEUS_MULTIPROC_DIR`` across containers would mix files of processes with equal pids),
so the API's ``/api/metrics`` cannot show them. This serves them (``render_metrics``: every
process writing to the worker's metrics directory), behind the API's bearer token
(``WHALLI_METRICS_TOKEN``) when one is set, from a daemon thread: a scrape never waits for a
job, nor a job for a scrape.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from whalli.adapters.prometheus.metrics import render_metrics, scrape_allowed


class MetricsServer:
    """Serving from ``start`` until ``stop``; ``port`` is the one bound (0 asks for any)."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(token))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _handler(token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "whalli-worker"
        sys_version = ""
        timeout = 10  # a client that sends nothing does not hold its thread for ever

        def do_GET(self) -> None:  # (the names http.server calls)
            self._metrics(with_body=True)

        def do_HEAD(self) -> None:
            self._metrics(with_body=False)

        def do_POST(self) -> None:
            self._not_allowed()

        do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

        def _metrics(self, *, with_body: bool) -> None:
            if self.path.partition("?")[0] != "/metrics":
                self._answer(HTTPStatus.NOT_FOUND, b"Not found.\n", "text/plain", with_body)
                return
            if not scrape_allowed(self.headers.get("authorization", ""), token):
                refusal = b"A valid metrics token is required.\n"
                self._answer(HTTPStatus.UNAUTHORIZED, refusal, "text/plain", with_body)
                return
            body, content_type = render_metrics()
            self._answer(HTTPStatus.OK, body, content_type, with_body)

        def _not_allowed(self) -> None:
            body = b"Only GET and HEAD.\n"
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, body, "text/plain", with_body=True)

        def _answer(
            self, status: HTTPStatus, body: bytes, content_type: str, with_body: bool
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", "Bearer")
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET, HEAD")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every 15 s is not worth a log line

    return Handler
