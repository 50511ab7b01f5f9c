"""Process and port helpers shared by the embedded servers."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import time
from pathlib import Path


def free_port(preferred: int | None = None) -> int:
    """Return ``preferred`` when nothing listens there on loopback, else a free ephemeral port."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when ``pid`` runs and, if ``marker`` is given, its command line contains it.

    The marker guards against pid reuse after a crash: a recycled pid belongs to another program.
    """
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except OSError:
        return marker is None
    if state == "Z":
        return False
    return marker is None or marker in cmdline


def terminate(pid: int, marker: str | None, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL a process we started (checked by ``marker``)."""
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid, marker):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: object, timeout: float, what: str, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def read_or_create_secret(path: Path, nbytes: int = 18) -> str:
    """A random credential kept beside the data, readable by its owner only."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def open_prefix_for_others(path: Path) -> None:
    """Let another system user traverse (not list) the folders above ``path``."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def run_checked(args: list[str], **kwargs: object) -> str:
    """Run a command; on failure raise with its own error output, which says what went wrong."""
    import subprocess

    try:
        result = subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as e:
        output = (e.stderr or e.stdout or "").strip()[-2000:]
        raise RuntimeError(f"{Path(args[0]).name} failed (exit {e.returncode}): {output}") from None
    return str(result.stdout)
