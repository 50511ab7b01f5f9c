"""`make bench`: run every ``bench/bench_*.py`` and print (and save) their figures.

Each module exposes ``run() -> dict[str, float | str]`` whose figures include a ratio against a
baseline measured in the same run, because absolute timings on shared machines are noisy.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import bench


def main(selected: list[str]) -> int:
    results: dict[str, dict[str, float | str]] = {}
    for module in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if not module.name.startswith("bench_"):
            continue
        if selected and not any(s in module.name for s in selected):
            continue
        print(f"==> {module.name}", flush=True)
        started = time.perf_counter()
        figures = importlib.import_module(f"bench.{module.name}").run()
        figures["seconds"] = round(time.perf_counter() - started, 1)
        for key, value in figures.items():
            print(f"    {key:48} {value}")
        results[module.name] = figures
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
