"""Whalli's OpenAI-compatible API against a peer doing the same job, the LiteLLM proxy, in one run.

The issue's goals quote LiteLLM's published overhead (about 4 ms); this measures it here, on
the same machine, fake provider and client as Whalli, so the two can be compared directly.
Ways, each a streamed ``POST …/chat/completions`` of 20 tokens 5 ms apart (the fake's default),
read to ``[DONE]``:

- ``direct``: the fake provider itself;
- ``v1``: Whalli's ``POST /v1/chat/completions`` with a user's API key (authentication, rate
  limit, plan check, prompt cache asked, usage recorded in Postgres, metrics);
- ``litellm``: the LiteLLM proxy (``_litellm``: one model, a master key, no database, so no
  usage records, budgets or rate limits: lighter than what Whalli does per request);
- ``floor``: the floor relay of ``bench_chat`` (what any Python relay costs here).

Figures per way: time to first token minus direct's, p50 at c=1 (the ways interleaved, each
first in turn) and p99 at c=16; streamed replies per second at c=16 ÷ direct's; the relaying
process's CPU per reply at c=16 (its process tree); and Whalli against LiteLLM as ratios
(``v1_vs_litellm_*``: below 1 is Whalli ahead for overheads and CPU, above 1 for throughput).

LiteLLM lives in its own virtualenv, which ``make bench`` installs (``bench/.peers``). Without
it (no package index) the figures say ``litellm_absent`` and the other ways still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvloop

from bench._chat_world import (
    Timed,
    _read_chunks,
    api_env,
    direct_reply,
    raise_fd_limit,
    register,
    start_api,
    start_fake,
    start_floor,
    stop,
    v1_reply,
)
from bench._lean_http import LeanClient
from bench._litellm import MASTER_KEY, MODEL, installed_version, start_litellm
from bench.bench_chat import (
    C1_ROUNDS,
    C16,
    C16_EACH,
    REPLY_TIMEOUT_S,
    _client_collector_off,
    _concurrently,
    _ms,
    _pct,
    _prompt,
    _say,
)
from whalli.adapters.embedded.stack import EmbeddedStack
from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir

C16_ROUNDS = 3
WARM_UP = 20
PAUSE_S = 1.0


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every live descendant (``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(used.get(p, 0.0) for p in tree)


async def peer_reply(client: LeanClient, prompt: str) -> Timed:
    """The direct request through the LiteLLM proxy, with its master key."""
    timed = Timed(time.perf_counter())
    timed.started = timed.t0
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with client.stream("POST", "/chat/completions", json_body=body, headers=headers) as s:
        if s.status_code != 200:
            raise RuntimeError(f"LiteLLM answered {s.status_code}: {(await s.aread())[:300]!r}")
        timed.attached = time.perf_counter()
        return await _read_chunks(s, timed)


class Ways:
    def __init__(self) -> None:
        self.failed: dict[str, int] = {}

    def bounded(self, name: str, reply: Callable[[], Awaitable[Timed]]) -> Callable[[], Awaitable[Timed | None]]:  # fmt: skip
        async def one() -> Timed | None:
            try:
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    return await reply()
            except (TimeoutError, RuntimeError, httpx.TransportError, OSError):
                self.failed[name] = self.failed.get(name, 0) + 1
                return None

        return one


async def _measure(urls: dict[str, str], pids: dict[str, int]) -> dict[str, float | str]:
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=urls["v1"], timeout=60))
        clients = {
            name: await stack.enter_async_context(contextlib.aclosing(LeanClient(url)))
            for name, url in urls.items()
        }
        auth = await register(http)
        created = await http.post("/api/keys", json={"name": "bench"}, headers=auth)
        key: str = created.json()["secret"]
        w = Ways()
        makers: dict[str, Callable[[], Awaitable[Timed]]] = {
            "direct": lambda: direct_reply(clients["direct"], _prompt()),
            "v1": lambda: v1_reply(clients["v1"], key, _prompt()),
            "floor": lambda: direct_reply(clients["floor"], _prompt()),
        }
        if "litellm" in urls:
            makers["litellm"] = lambda: peer_reply(clients["litellm"], _prompt())
        ways = {name: w.bounded(name, make) for name, make in makers.items()}
        _say(f"warming up {', '.join(ways)}")
        for _ in range(WARM_UP):
            for make in ways.values():
                await make()
        w.failed.clear()
        names = list(ways)
        c1: dict[str, list[Timed]] = {name: [] for name in names}
        c16: dict[str, list[Timed]] = {name: [] for name in names}
        rps: dict[str, list[float]] = {name: [] for name in names}
        cpu = dict.fromkeys(names, 0.0)
        with _client_collector_off():
            _say("time to first token at c=1, the ways interleaved")
            for i in range(C1_ROUNDS):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    if (timed := await ways[name]()) is not None:
                        c1[name].append(timed)
            _say("c=16: time to first token, replies per second, CPU per reply")
            for _ in range(C16_ROUNDS):
                for name, make in ways.items():
                    await asyncio.sleep(PAUSE_S)  # what the last way left running ends first
                    used = tree_cpu_seconds(pids[name]) if name in pids else 0.0
                    timed, took = await _concurrently(make, C16, C16_EACH)
                    if name in pids:
                        cpu[name] += tree_cpu_seconds(pids[name]) - used
                    c16[name] += timed
                    rps[name].append(len(timed) / took)
    return _figures(c1, c16, rps, cpu, w.failed)


def _figures(
    c1: dict[str, list[Timed]], c16: dict[str, list[Timed]], rps: dict[str, list[float]],
    cpu: dict[str, float], failed: dict[str, int],
) -> dict[str, float | str]:  # fmt: skip
    def ttft(ts: list[Timed]) -> list[float]:
        return [t.first - t.t0 for t in ts]

    d1 = statistics.median(ttft(c1["direct"]))
    d16 = _pct(ttft(c16["direct"]), 99)
    rd = statistics.median(rps["direct"])
    figures: dict[str, float | str] = {
        "direct_ttft_c1_p50_ms": _ms(d1),
        "direct_ttft_c16_p99_ms": _ms(d16),
        "direct_rps_c16": round(rd, 1),
    }
    for name in [n for n in c1 if n != "direct"]:
        figures |= {
            f"{name}_ttft_c1_p50_overhead_ms": _ms(statistics.median(ttft(c1[name])) - d1),
            f"{name}_ttft_c16_p99_overhead_ms": _ms(_pct(ttft(c16[name]), 99) - d16),
            f"{name}_rps_c16_ratio_vs_direct": round(statistics.median(rps[name]) / rd, 3),
            f"{name}_cpu_ms_per_reply_c16": round(1000 * cpu[name] / len(c16[name]), 2),
        }
    if "litellm" in c1:
        compared = {
            "ttft_c1_p50_overhead": "ttft_c1_p50_overhead_ms",
            "ttft_c16_p99_overhead": "ttft_c16_p99_overhead_ms",
            "cpu_per_reply_c16": "cpu_ms_per_reply_c16",
            "rps_c16": "rps_c16_ratio_vs_direct",
        }
        for key, figure in compared.items():
            ours, theirs = figures[f"v1_{figure}"], figures[f"litellm_{figure}"]
            assert isinstance(ours, float)
            assert isinstance(theirs, float)
            figures[f"v1_vs_litellm_{key}"] = round(ours / theirs, 3) if theirs > 0 else "n/a"
    for name in c1:
        figures[f"{name}_failed_replies"] = failed.get(name, 0)
    return figures


def run() -> dict[str, float | str]:
    raise_fd_limit()
    version = installed_version()
    with tempfile.TemporaryDirectory(prefix="whalli-bench-peers-") as tmp:
        root = Path(tmp)
        stack = EmbeddedStack(root / "stack", fast=True)
        urls, started = stack.up()
        procs = []
        try:
            Migrator(urls.database_url, default_migrations_dir()).apply()
            fake, provider = start_fake()
            procs.append(fake)
            api, api_url = start_api(api_env(urls.as_env(), provider, root), root)
            procs.append(api)
            floor, floor_url = start_floor(provider, root)
            procs.append(floor)
            ways = {"direct": provider, "v1": api_url, "floor": floor_url}
            pids = {"v1": api.pid, "floor": floor.pid}
            if version is not None:
                _say(f"starting LiteLLM {version}")
                litellm, litellm_url = start_litellm(provider, root)
                procs.append(litellm)
                ways["litellm"], pids["litellm"] = litellm_url, litellm.pid
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                figures = runner.run(_measure(ways, pids))
        finally:
            for proc in reversed(procs):
                stop(proc)
            stack.down(only=started)
    figures["litellm_version"] = version or "absent: not installed (make bench installs it)"
    return figures
