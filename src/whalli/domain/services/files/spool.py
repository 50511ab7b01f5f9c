"""The temporary files a worker streams downloads to, named after the process that owns them.

A file is removed by its job's ``finally``; a worker killed mid-job (SIGKILL, the OOM killer)
never runs it, so its files would stay for ever (up to 25 MB of audio each). Each name holds
its host and process id (``whalli-extract-<host>-<pid>-...``): a worker starting removes the
files of this host's processes that are gone, never those of one still running (another
worker's, or its own). The host keeps apart workers in other PID namespaces (containers)
sharing one directory; a dead process's id taken by a new process only delays the cleanup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "whalli-extract-"


def spool_prefix() -> str:
    """The prefix of this process's temporary files (asked at each file: a fork changes it)."""
    return f"{PREFIX}{_host()}-{os.getpid()}-"


def remove_dead_spools(temp_dir: str | Path | None = None) -> int:
    """Remove the files this host's dead processes left in ``temp_dir`` (``None``: the
    system's temporary directory); return how many were removed."""
    folder = Path(temp_dir or tempfile.gettempdir())
    mine = f"{PREFIX}{_host()}-"
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0  # no such directory yet: nothing was left in it
    for entry in entries:
        if not entry.name.startswith(mine):
            continue
        pid = entry.name[len(mine) :].partition("-")[0]
        if not pid.isdigit() or _alive(int(pid)) or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):  # another worker starting removed it
            os.unlink(entry.path)
            removed += 1
    if removed:
        log.info("Removed %d temporary files left by workers that died.", removed)
    return removed


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # no process's id: never taken for a dead one
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
