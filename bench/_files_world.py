"""The processes ``bench_files`` drives: the API under uvicorn (``whalli serve``) and extraction
workers (``whalli worker``), each in its own process with the embedded stack's ``WHALLI_*``
environment, plus what the client needs (a user, uploads, polling, RSS readings)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench._files_docs import multipart

PASSWORD = "correct horse battery staple"
_CLI = [sys.executable, "-m", "whalli.entrypoints.cli.main"]


def base_env(urls: dict[str, str], root: Path) -> dict[str, str]:
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
        "WHALLI_PASSWORD_HASH_TIME_COST": "2",
        "WHALLI_REQUEST_TIMEOUT_S": "600",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    (Path(env["PROMETHEUS_MULTIPROC_DIR"])).mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [*_CLI, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it also stops what it started
        )  # fmt: skip


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = _spawn(["serve", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited; see {log}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("the API did not answer within 60 s")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return _spawn(["worker"], env, log)


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group it leads: sandbox children too
        proc.wait()


@contextlib.contextmanager
def paused(proc: subprocess.Popen[Any]) -> Iterator[None]:
    """SIGSTOP ``proc`` (while the queue is empty it holds no message) and resume it after."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def has_forkserver(pid: int) -> bool:
    """Whether the worker started its extraction fork server (it ran a job: it is warm)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"forkserver" in cmdline:
                return True
    return False


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_s(*pids: int) -> float:
    """User + system CPU seconds of these processes themselves (not their children)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, own processes); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def register(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "bench"}
    )
    if response.status_code != 201:
        raise RuntimeError(f"register answered {response.status_code}: {response.text[:300]}")
    return {"Authorization": f"Bearer {response.json()['tokens']['accessToken']}"}


async def upload(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    chunks: Any,
    size: int,
    filename: str,
    content_type: str,
) -> str:
    """POST /api/files/upload with a streamed multipart body; the attachment id."""
    headers, body = multipart(chunks, size, filename, content_type)
    response = await client.post("/api/files/upload", content=body, headers={**auth, **headers})
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    attachment: dict[str, Any] = response.json()
    return str(attachment.get("id") or attachment["attachment"]["id"])


async def status(client: httpx.AsyncClient, auth: dict[str, str], file_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/files/{file_id}", headers=auth)
    if response.status_code != 200:
        raise RuntimeError(f"GET file answered {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


async def until_final(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    file_id: str,
    *,
    interval: float = 0.01,
    timeout: float = 120,
) -> tuple[float, float, dict[str, Any]]:
    """Poll until done/failed: (first time ``processing`` or later was seen, time it was
    final, the final body), times from ``time.perf_counter()``. Raises on ``failed``."""
    seen = 0.0
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        body = await status(client, auth, file_id)
        now = time.perf_counter()
        if body.get("status") != "pending" and not seen:
            seen = now
        if body.get("status") == "done":
            return seen, now, body
        if body.get("status") == "failed":
            raise RuntimeError(f"extraction failed: {body.get('failureReason') or body}")
        await asyncio.sleep(interval)
    raise RuntimeError(f"file {file_id} not done within {timeout} s")


async def delete(client: httpx.AsyncClient, auth: dict[str, str], file_id: str) -> None:
    """Best effort: the big random uploads would otherwise sit in the bucket."""
    with contextlib.suppress(httpx.HTTPError):
        await client.delete(f"/api/files/{file_id}", headers=auth)
