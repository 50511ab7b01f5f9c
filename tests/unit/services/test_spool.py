"""A worker starting removes the temporary files of this host's workers that died mid-job,
never a live process's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from whalli.domain.services.files.spool import remove_dead_spools, spool_prefix


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: no process has this id any more
    return process.pid


def test_a_file_is_named_after_its_host_and_process() -> None:
    assert spool_prefix().startswith("whalli-extract-")
    assert spool_prefix().endswith(f"-{os.getpid()}-")


def test_the_files_of_dead_processes_go_and_every_other_file_stays(tmp_path: Path) -> None:
    host_prefix = spool_prefix().removesuffix(f"{os.getpid()}-")
    dead = tmp_path / f"{host_prefix}{dead_pid()}-k3j2h1"
    live = tmp_path / f"{spool_prefix()}a8b7c6"  # this very process's
    elsewhere = tmp_path / f"whalli-extract-another.host-{dead_pid()}-x1y2z3"
    others = [tmp_path / "notes.txt", tmp_path / f"{host_prefix}notapid-q"]
    for path in [dead, live, elsewhere, *others]:
        path.write_bytes(b"audio")

    assert remove_dead_spools(tmp_path) == 1

    assert sorted(tmp_path.iterdir()) == sorted([live, elsewhere, *others])


def test_a_missing_directory_has_nothing_to_remove(tmp_path: Path) -> None:
    assert remove_dead_spools(tmp_path / "not-yet") == 0
