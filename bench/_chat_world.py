"""The processes and clients ``bench_chat`` drives: an embedded stack, the fake provider, the
API under uvicorn (``whalli serve``) and the floor relay (``_floor_relay``), each in its own
process, plus timed SSE clients."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._lean_http import LeanClient, LeanResponse

MODEL = "openai/gpt-4o-mini"
API_KEY = "sk-bench-0123456789abcdef"
PASSWORD = "correct horse battery staple"


def raise_fd_limit() -> None:
    # 1,000 open streams need ~4 descriptors each in the API (client, upstream, Redis) and
    # one or two here; children inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._fake_provider"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError("the fake provider did not start")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def start_api(env: dict[str, str], root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = (root / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "whalli.entrypoints.cli.main", "serve", "--port", str(port)],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited; see {root / 'api.log'}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API did not answer within 60 s")


def start_floor(provider_url: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The floor relay (``bench/_floor_relay.py``) in front of the fake provider."""
    port = _free_port()
    log = (root / "floor.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._floor_relay", provider_url, str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the floor relay exited; see {root / 'floor.log'}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the floor relay did not listen within 30 s")


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()  # the fake provider's signal to leave
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Timed:
    """One streamed reply as the client saw it (``time.perf_counter()`` seconds)."""

    t0: float  # the first request was sent
    started: float = 0.0  # Whalli: the start answer arrived (direct: = t0)
    attached: float = 0.0  # the stream's response headers arrived
    first: float = 0.0  # the first token arrived
    done: float = 0.0  # the final event arrived
    arrivals: list[float] = field(default_factory=list)  # each token, at the client
    sent: list[float] = field(default_factory=list)  # each token, when the fake sent it
    cached: bool = False


def _token(sent: str, timed: Timed, now: float) -> None:
    timed.sent.append(float(sent))
    timed.arrivals.append(now)
    if not timed.first:
        timed.first = now


async def whalli_reply(
    client: LeanClient, auth: dict[str, str], prompt: str, *, cache: bool = False
) -> Timed:
    """POST /api/chat/start then GET /api/chat/stream (no header: the EventSource way)."""
    timed = Timed(time.perf_counter())
    body = {"model": MODEL, "message": prompt, "cache": cache}
    status, answer = await client.request("POST", "/api/chat/start", json_body=body, headers=auth)
    if status != 201:
        raise RuntimeError(f"start answered {status}: {answer[:300]!r}")
    timed.started = time.perf_counter()
    url = f"/api/chat/stream?sessionId={json.loads(answer)['sessionId']}"
    async with client.stream("GET", url) as stream:
        timed.attached = time.perf_counter()
        return await _read_reply(stream, timed)


async def whalli_one_request_reply(
    client: LeanClient, auth: dict[str, str], prompt: str, *, cache: bool = False
) -> Timed:
    """POST /api/chat/start with ``Accept: text/event-stream``: the reply in the same request."""
    timed = Timed(time.perf_counter())
    body = {"model": MODEL, "message": prompt, "cache": cache}
    headers = {**auth, "Accept": "text/event-stream"}
    async with client.stream("POST", "/api/chat/start", json_body=body, headers=headers) as stream:
        if stream.status_code != 201:
            raise RuntimeError(f"start answered {stream.status_code}: {(await stream.aread())!r}")
        timed.started = timed.attached = time.perf_counter()
        return await _read_reply(stream, timed)


async def _read_reply(stream: LeanResponse, timed: Timed) -> Timed:
    """Whalli's ``token`` events until ``done`` (an ``error`` raises)."""
    buffer = b""
    async for data in stream.aiter_raw():
        now = time.perf_counter()
        *frames, buffer = (buffer + data).split(b"\n\n")
        for frame in frames:
            fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line)
            event = fields.get(b"event")
            if event == b"token":
                _token(json.loads(fields[b"data"])["delta"], timed, now)
            elif event in (b"done", b"error"):
                payload = json.loads(fields[b"data"])
                if event == b"error":
                    raise RuntimeError(f"the stream ended with an error: {payload}")
                timed.cached, timed.done = payload["cached"], now
                await _drain(stream)
                return timed
    raise RuntimeError("the stream ended without a done event")


async def _drain(stream: LeanResponse) -> None:
    """Read what is left of a response (its last chunk), so its connection can be reused."""
    async for _ in stream.aiter_raw():
        pass


async def direct_reply(client: LeanClient, prompt: str) -> Timed:
    """The same request straight to the fake provider, as Whalli's OpenAI adapter sends it."""
    timed = Timed(time.perf_counter())
    timed.started = timed.t0
    body = {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with client.stream("POST", "/chat/completions", json_body=body, headers=headers) as s:
        timed.attached = time.perf_counter()
        return await _read_chunks(s, timed)


async def _read_chunks(stream: LeanResponse, timed: Timed) -> Timed:
    """OpenAI's chat completion chunks until ``data: [DONE]``."""
    buffer = b""
    async for data in stream.aiter_raw():
        now = time.perf_counter()
        *frames, buffer = (buffer + data).split(b"\n\n")
        for frame in frames:
            payload = frame.removeprefix(b"data: ")
            if payload == b"[DONE]":
                timed.done = now
                await _drain(stream)
                return timed
            choices = json.loads(payload)["choices"]
            if choices and choices[0]["delta"].get("content"):
                _token(choices[0]["delta"]["content"], timed, now)
    raise RuntimeError("the stream ended without [DONE]")


async def v1_reply(client: LeanClient, api_key: str, prompt: str) -> Timed:
    """The same conversation as one streamed ``POST /v1/chat/completions`` with an API key (the
    OpenAI-compatible API: one request, as through LiteLLM or any other proxy)."""
    timed = Timed(time.perf_counter())
    timed.started = timed.t0
    # temperature 0: /v1 asks the prompt cache only then (a unique prompt misses and is stored,
    # the same work as before that rule; the cache-hit phase repeats a prompt)
    body = {
        "model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True,
        "temperature": 0,
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"}
    path = "/v1/chat/completions"
    async with client.stream("POST", path, json_body=body, headers=headers) as stream:
        if stream.status_code != 200:
            raise RuntimeError(f"/v1/chat/completions answered {stream.status_code}")
        timed.attached = time.perf_counter()
        return await _read_chunks(stream, timed)


async def register(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "bench"}
    )
    if response.status_code != 201:
        raise RuntimeError(f"register answered {response.status_code}: {response.text[:300]}")
    return {"Authorization": f"Bearer {response.json()['tokens']['accessToken']}"}


def api_env(urls: dict[str, str], provider_url: str, root: Path) -> dict[str, str]:
    return {
        **urls,
        "WHALLI_ENV": "test",
        "WHALLI_LOG_LEVEL": "warning",
        "WHALLI_LOG_DIR": str(root / "logs"),
        "WHALLI_DATA_DIR": str(root / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
        "WHALLI_S3_BUCKET": "bench",
        "WHALLI_JWT_SECRET": "bench-" + "x" * 60,
        "WHALLI_RATE_LIMIT_IP_PER_MIN": "1000000",
        "WHALLI_RATE_LIMIT_USER_PER_MIN": "1000000",
        "WHALLI_RATE_LIMIT_LOGIN_PER_IP": "100000/60",
        "WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP": "100000/60",
        "WHALLI_OPENAI_API_KEY": API_KEY,
        "WHALLI_OPENAI_BASE_URL": provider_url,
        "WHALLI_PROVIDER_MAX_ATTEMPTS": "1",
        # the memory phase holds 1,000 generations before their first token: none may time out
        "WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S": "600",
    }
