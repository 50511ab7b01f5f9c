"""`whalli serve` as deployed: idle client connections stay open for
``WHALLI_HTTP_KEEP_ALIVE_S``, and the client address is Whalli's to decide.

A reverse proxy reuses idle connections to the API for up to its own idle timeout (Traefik's: 90
s); if the API closed them sooner (uvicorn's default: 5 s), a request sent as the API closes
meets a reset, which the proxy answers with a 502.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from whalli.adapters.embedded.process import free_port
from whalli.adapters.embedded.stack import StackUrls

IDLE_S = 6.0  # longer than uvicorn's own default keep-alive (5 s)


def _get_health(conn: socket.socket) -> bytes:
    """One whole response (head and body) to ``GET /api/health`` on ``conn``; what arrived if
    the server closed the connection first."""
    conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: whalli\r\n\r\n")
    return _read_response(conn)


def _read_response(conn: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        piece = conn.recv(65536)
        if not piece:
            return answer
        answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


@contextlib.contextmanager
def _serving(
    stack_urls: StackUrls,
    tmp_path: Path,
    preexec: Callable[[], None] | None = None,
    **settings: str,
) -> Iterator[tuple[socket.socket, subprocess.Popen[bytes]]]:
    """``whalli serve`` on a free port, and one connection to it."""
    port = free_port()
    env = {
        **os.environ,
        "WHALLI_DATABASE_URL": stack_urls.database_url,
        "WHALLI_REDIS_URL": stack_urls.redis_url,
        "WHALLI_S3_ENDPOINT": stack_urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": stack_urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": stack_urls.s3_secret_key,
        "WHALLI_LOG_DIR": str(tmp_path / "logs"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **settings,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "whalli.entrypoints.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the API exited"
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the API did not listen within 60 s"
                time.sleep(0.1)
        with conn:
            yield conn, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


def test_an_idle_connection_outlives_uvicorns_default_keep_alive(
    stack_urls: StackUrls, tmp_path: Path
) -> None:
    with _serving(stack_urls, tmp_path, WHALLI_HTTP_KEEP_ALIVE_S="60") as (conn, _):
        assert _get_health(conn).startswith(b"HTTP/1.1 200")
        time.sleep(IDLE_S)
        # the same connection, still open: uvicorn's default would have closed it by now
        assert _get_health(conn).startswith(b"HTTP/1.1 200")


def test_a_client_cannot_pick_its_ip_with_x_forwarded_for_unless_its_proxy_is_trusted(
    stack_urls: StackUrls, tmp_path: Path
) -> None:
    # No trusted proxies (the default): every request from here is 127.0.0.1's, whatever
    # X-Forwarded-For says. (uvicorn's own proxy-headers handling believed it from loopback.)
    with _serving(stack_urls, tmp_path, WHALLI_RATE_LIMIT_IP_PER_MIN="2") as (conn, _):
        statuses = []
        for _ in range(5):  # a fixed window's boundary falls between them at most once
            spoofed = ".".join(str(random.randrange(1, 255)) for _ in range(4))
            conn.sendall(
                b"GET /api/models HTTP/1.1\r\nHost: whalli\r\n"
                b"X-Forwarded-For: " + spoofed.encode() + b"\r\n\r\n"
            )
            statuses.append(_read_response(conn).split(b" ", 2)[1])
    assert b"429" in statuses  # one bucket for all of them


def test_the_open_file_limit_is_raised_to_what_the_system_allows(
    stack_urls: StackUrls, tmp_path: Path
) -> None:
    # Started as a login shell or a container often starts it: a soft limit of a few hundred
    # descriptors, far below the hard one; every open stream needs one or two.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    allowed = 1_048_576 if hard == resource.RLIM_INFINITY else min(hard, 1_048_576)

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with _serving(stack_urls, tmp_path, low_soft_limit) as (conn, server):
        assert _get_health(conn).startswith(b"HTTP/1.1 200")
        limits = Path(f"/proc/{server.pid}/limits").read_text()
    soft = next(line.split()[3] for line in limits.splitlines() if "open files" in line)
    assert int(soft) == allowed


def test_served_under_a_root_path_the_links_it_answers_lead_back_under_it(
    stack_urls: StackUrls, tmp_path: Path
) -> None:
    # The proxy in front mounts the API at /whalli and strips that from each request it
    # forwards (Traefik's StripPrefix): the API sees /api/..., its clients call /whalli/api/...
    settings = {
        "WHALLI_ROOT_PATH": "/whalli", "WHALLI_DEV_MODELS": "true",
        # every test's requests come from 127.0.0.1, and the budgets live in the shared Redis
        "WHALLI_RATE_LIMIT_IP_PER_MIN": "100000", "WHALLI_RATE_LIMIT_LOGIN_PER_IP": "100000/60",
    }  # fmt: skip
    with _serving(stack_urls, tmp_path, **settings) as (conn, _):
        port = conn.getpeername()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            email = f"root-{uuid.uuid4().hex[:10]}@example.com"
            registered = client.post(
                "/api/auth/register",
                json={"email": email, "password": "correct horse battery staple"},
            )
            assert registered.status_code == 201, registered.text
            token = registered.json()["tokens"]["accessToken"]
            auth = {"Authorization": f"Bearer {token}"}
            started = client.post(
                "/api/chat/start", json={"model": "dev/echo", "message": "Hi there"}, headers=auth
            )
            assert started.status_code == 201, started.text
            link = started.json()["streamUrl"]
            assert link.startswith("/whalli/api/chat/stream?sessionId=")
            streamed = client.get(link.removeprefix("/whalli"))  # as the proxy forwards it
            assert streamed.status_code == 200, streamed.text
            assert "event: done" in streamed.text
