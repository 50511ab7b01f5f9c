"""The zero-setup local stack: Postgres, Redis and S3 started on loopback under one folder.

``up`` is idempotent and serialized by a file lock; ``down`` stops exactly the processes recorded
in the state file (checked by pid and command line, so a recycled pid is never killed).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from whalli.adapters.embedded.postgres import EmbeddedPostgres
from whalli.adapters.embedded.redis import EmbeddedRedis
from whalli.adapters.embedded.s3 import EmbeddedS3


class _Server(Protocol):
    name: str

    def is_up(self, state: dict[str, Any]) -> bool: ...
    def start(self, previous: dict[str, Any] | None) -> dict[str, Any]: ...
    def stop(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class StackUrls:
    database_url: str
    redis_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str

    def as_env(self) -> dict[str, str]:
        return {
            "WHALLI_DATABASE_URL": self.database_url,
            "WHALLI_REDIS_URL": self.redis_url,
            "WHALLI_S3_ENDPOINT": self.s3_endpoint,
            "WHALLI_S3_ACCESS_KEY": self.s3_access_key,
            "WHALLI_S3_SECRET_KEY": self.s3_secret_key,
        }


class EmbeddedStack:
    def __init__(self, root: Path, *, fast: bool = False, base_port: int | None = None) -> None:
        self.root = root
        self.state_file = root / "services.json"
        ports = (base_port, base_port + 1, base_port + 2) if base_port else (None, None, None)
        self.servers: list[_Server] = [
            EmbeddedPostgres(root, fast=fast, preferred_port=ports[0]),
            EmbeddedRedis(root, fast=fast, preferred_port=ports[1]),
            EmbeddedS3(root, fast=fast, preferred_port=ports[2]),
        ]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "services.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        tmp.replace(self.state_file)

    def up(self, progress: Callable[[str], None] = lambda _: None) -> tuple[StackUrls, list[str]]:
        """Start what is not running; return the URLs and the names of the servers started now."""
        started: list[str] = []
        with self._locked():
            state = self._read_state()
            for server in self.servers:
                previous = state.get(server.name)
                if previous and server.is_up(previous):
                    progress(f"{server.name}: already running")
                    continue
                progress(f"{server.name}: starting")
                if previous:
                    server.stop(previous)  # a half-dead leftover: make sure it is gone
                state[server.name] = server.start(previous)
                started.append(server.name)
                self._write_state(state)
                progress(f"{server.name}: ready")
            self._write_state(state)
        return self._urls(state), started

    def down(self, only: list[str] | None = None) -> list[str]:
        """Stop the servers recorded in the state file (or just ``only``); return their names."""
        stopped: list[str] = []
        with self._locked():
            state = self._read_state()
            for server in reversed(self.servers):
                if only is not None and server.name not in only:
                    continue
                entry = state.get(server.name)
                if entry:
                    server.stop(entry)
                    entry["pid"] = None
                    stopped.append(server.name)
            self._write_state(state)
        return stopped

    def status(self) -> dict[str, tuple[bool, str]]:
        state = self._read_state()
        result: dict[str, tuple[bool, str]] = {}
        for server in self.servers:
            entry = state.get(server.name)
            running = entry is not None and server.is_up(entry)
            result[server.name] = (running, (entry or {}).get("url", ""))
        return result

    def urls(self) -> StackUrls | None:
        state = self._read_state()
        if all(s.name in state and s.is_up(state[s.name]) for s in self.servers):
            return self._urls(state)
        return None

    @staticmethod
    def _urls(state: dict[str, Any]) -> StackUrls:
        def get(server: str, key: str) -> str:
            return str((state.get(server) or {}).get(key) or "")

        return StackUrls(
            database_url=get("postgres", "url"),
            redis_url=get("redis", "url"),
            s3_endpoint=get("s3", "url"),
            s3_access_key=get("s3", "access_key"),
            s3_secret_key=get("s3", "secret_key"),
        )
