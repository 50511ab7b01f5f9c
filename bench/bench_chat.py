"""Chat streaming through Whalli against the same fake provider called directly, in one run.

Processes: an embedded Postgres/Redis/S3 (temp dir, fast), the fake OpenAI-compatible provider
(``bench/_fake_provider.py``: 20 tokens 5 ms apart unless told otherwise, connections kept
alive), the API under ``whalli serve`` (uvicorn, one worker), the floor relay
(``bench/_floor_relay.py``: the same server and outbound client relaying the fake's bytes
untouched, nothing else), and this client (uvloop; every timed request through
``bench/_lean_http.py``, which costs a third of httpx's CPU per reply, so the rig takes less of
the two cores from what it measures; its own CPU per reply is reported, ``client_cpu_*``). Every Whalli request
uses ``cache: false`` and a unique prompt unless it measures the cache. Figures:

1. time to first token, Whalli minus direct: p50 at concurrency 1, p99 at concurrency 16
   (Whalli = POST /api/chat/start sent → first ``token`` event; split into start and stream);
   at c=1 both interleaved (in a shuffled order; the API idles through each direct reply)
   and in back-to-back blocks, with what a request to a process idle for 100 ms costs here
   for reference; and
   the same for the two one-request ways: the start asking for the reply as events
   (``Accept: text/event-stream``) and ``POST /v1/chat/completions`` (``one_request_*``,
   ``v1_*``); the c=16 p50 and p99 also at a steady concurrency (``*_c16_steady_*``: the
   held phases of item 2, each worker's first reply left out), where the p99 is not the first
   burst's tail;
2. streamed replies per second (whole stream to ``done``) at concurrency 16, Whalli ÷ direct,
   for the same three ways: in short phases of 8 replies a worker (``rps_c16_*``), and held
   for ``STEADY_S`` seconds (``*_steady_*``), where the phase's start (every worker's first
   request at once) and end (the slowest worker's last reply) weigh little;
   and for 1 and 2 the floor relay's figures (``floor_*``), and ``/v1`` above the floor
   (``v1_*_over_floor*``): what any Python relay costs here, and Whalli's own work;
3. the gap between tokens with 100 concurrent streams minus the provider's configured gap, at
   5 ms and at 20 ms (and minus the gap at which the fake really sent them: no fake jitter);
4. a cache-hit reply (start → done) ÷ (one Redis GET of the cached value + GET /api/health);
   the same for its stream alone (``GET /api/chat/stream`` → ``done``), for the one-request
   start, and for one streamed ``POST /v1/chat/completions`` (→ ``[DONE]``);
5. API RSS growth per idle open stream with 1,000 streams whose provider holds.

Replies with no final event within ``REPLY_TIMEOUT_S`` (or cut by a transport error) are left
out of the figures and counted (``*_stuck``, ``failed_replies_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import uvloop
from redis.asyncio import Redis

from bench._chat_world import (
    Timed,
    api_env,
    cpu_seconds,
    direct_reply,
    open_fds,
    raise_fd_limit,
    register,
    rss_kib,
    start_api,
    start_fake,
    start_floor,
    stop,
    v1_reply,
    whalli_one_request_reply,
    whalli_reply,
)
from bench._lean_http import LeanClient
from whalli.adapters.embedded.stack import EmbeddedStack
from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir

GAP_MS = 5
C1_ROUNDS, C1_BLOCK = 40, 10
C1_SEED = 30  # the c=1 phase's orders (see _ttft_and_rps)
C16, C16_EACH, C16_ROUNDS = 16, 8, 2
STEADY_S, STEADY_ROUNDS = 4.0, 2  # the steady-state throughput phases (see _for_a_while)
GAP_STREAMS, GAP_TOKENS, GAP_FIRST_MS = 100, 40, 2500
GAPS_MS = (GAP_MS, 20)  # the goal's 5 ms (20,000 tokens/s in all), and a gentler 20 ms
CACHE_ROUNDS = 15
IDLE_WAKE_ROUNDS = 30
IDLE_STREAMS = 1000
REPLY_TIMEOUT_S = 15.0


def _say(phase: str) -> None:
    print(f"    .. {phase}", flush=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _ms(value: float) -> float:
    return round(value * 1000, 2)


def _prompt(directive: str = "") -> str:
    return f"bench {uuid.uuid4().hex} {directive}".strip()


class Bench:
    def __init__(
        self, http: httpx.AsyncClient, api: LeanClient, direct: LeanClient, floor: LeanClient
    ) -> None:
        """``http`` for the set-up and the memory phase; ``api``, ``direct`` and ``floor`` (the
        floor relay; all lean, see ``_lean_http``) for every timed request."""
        self.http, self.api, self.direct, self.floor = http, api, direct, floor
        self.auth: dict[str, str] = {}
        self.api_key = ""
        self.stuck = 0  # replies with no final event within REPLY_TIMEOUT_S (left out)
        self.failed = 0  # replies cut by a transport error (left out)

    async def _bounded(self, reply: Awaitable[Timed]) -> Timed | None:
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                return await reply
        except TimeoutError:
            self.stuck += 1
            return None
        except (httpx.TransportError, OSError, asyncio.IncompleteReadError):
            self.failed += 1
            return None

    def whalli(self, directive: str = "", *, cache: bool = False) -> Awaitable[Timed | None]:
        return self._bounded(whalli_reply(self.api, self.auth, _prompt(directive), cache=cache))

    def one_request(self, directive: str = "", *, cache: bool = False) -> Awaitable[Timed | None]:
        reply = whalli_one_request_reply(self.api, self.auth, _prompt(directive), cache=cache)
        return self._bounded(reply)

    def v1(self, directive: str = "") -> Awaitable[Timed | None]:
        return self._bounded(v1_reply(self.api, self.api_key, _prompt(directive)))

    def straight(self, directive: str = "") -> Awaitable[Timed | None]:
        return self._bounded(direct_reply(self.direct, _prompt(directive)))

    def relayed(self, directive: str = "") -> Awaitable[Timed | None]:
        """The direct request through the floor relay (``_floor_relay``)."""
        return self._bounded(direct_reply(self.floor, _prompt(directive)))


async def _concurrently(
    make: Callable[[], Awaitable[Timed | None]], workers: int, each: int
) -> tuple[list[Timed], float]:
    async def worker() -> list[Timed | None]:
        return [await make() for _ in range(each)]

    started = time.perf_counter()
    results = await asyncio.gather(*(worker() for _ in range(workers)))
    took = time.perf_counter() - started
    return [t for batch in results for t in batch if t is not None], took


async def _for_a_while(
    make: Callable[[], Awaitable[Timed | None]], workers: int, seconds: float
) -> tuple[int, float, list[Timed]]:
    """Replies completed by ``workers`` each starting replies back to back for ``seconds``, the
    time until the last one ended, and the replies after each worker's first. ``_concurrently``'s
    phases are short (8 replies a worker): their start (every worker's first request at once)
    and their end (the slowest worker's last reply) weigh on its streams/s and make its TTFT
    p99 the first burst's tail; here they are a few per cent of the phase, and the replies
    kept for the steady-state TTFT leave out each worker's first (the ramp-up's burst)."""
    deadline = time.perf_counter() + seconds

    async def worker() -> tuple[int, list[Timed]]:
        done: list[Timed | None] = []
        while time.perf_counter() < deadline:
            done.append(await make())
        return sum(t is not None for t in done), _kept(done[1:])

    started = time.perf_counter()
    results = await asyncio.gather(*(worker() for _ in range(workers)))
    after_first = [t for _, timed in results for t in timed]
    return sum(count for count, _ in results), time.perf_counter() - started, after_first


@contextlib.contextmanager
def _client_collector_off() -> Iterator[None]:
    """No cyclic garbage collection in this client while a phase is timed.

    The client is the measuring instrument: it keeps every reply's timings, and CPython's full
    collections of its heap paused it 60-100 ms at a time during the timed phases (measured with
    ``gc.callbacks``), stretching whichever replies were in flight, most often Whalli's, which
    take most of the time. Collected between phases instead. The API and the fake provider
    keep their own collectors: their pauses are part of what is measured.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _kept(results: list[Timed | None]) -> list[Timed]:
    return [t for t in results if t is not None]


async def _ttft_and_rps(b: Bench, pid: int, floor_pid: int) -> dict[str, float | str]:
    ways: dict[str, Callable[[], Awaitable[Timed | None]]] = {
        "direct": b.straight, "whalli": b.whalli, "one_request": b.one_request, "v1": b.v1,
        "floor": b.relayed,
    }  # fmt: skip
    for _ in range(10):  # warm pools, prepared statements, caches
        for make in ways.values():
            await make()
    c1: dict[str, list[Timed | None]] = {name: [] for name in ways}
    names = list(ways)
    # Interleaved, in a new order each round (seeded: the same orders every run), so each way
    # follows each other way about as often. The same order rotated (until the thirtieth
    # session) put start + stream always right after a direct reply, through which the API
    # idles (~100 ms: see _idle_wake), and one-request always right after start + stream.
    order = random.Random(C1_SEED)
    for _ in range(C1_ROUNDS):
        for name in order.sample(names, len(names)):
            c1[name].append(await ways[name]())
    kept = {name: _kept(results) for name, results in c1.items()}
    kept_w, kept_d = kept["whalli"], kept["direct"]
    # The same at c=1 with each side kept busy: blocks of back-to-back replies, alternating.
    # Interleaved, the API sits idle through every direct reply (~100 ms), and a request to a
    # process idle that long pays this VM's wake-up cost (see _idle_wake); back to back, it
    # does not, as on a server with steady traffic.
    warm_w: list[Timed | None] = []
    warm_d: list[Timed | None] = []
    for _ in range(C1_ROUNDS // C1_BLOCK):
        warm_w += [await b.whalli() for _ in range(C1_BLOCK)]
        warm_d += [await b.straight() for _ in range(C1_BLOCK)]
    kept_warm_w, kept_warm_d = _kept(warm_w), _kept(warm_d)
    c16: dict[str, list[Timed]] = {name: [] for name in ways}
    rps: dict[str, list[float]] = {name: [] for name in ways}
    # The API process's CPU per reply: steadier than the throughput on a noisy machine, so a
    # change in the work Whalli does per reply shows even when streams/s moves with the noise.
    cpu: dict[str, float] = dict.fromkeys(ways, 0.0)
    own: dict[str, float] = dict.fromkeys(ways, 0.0)  # this client's CPU: the rig's own cost
    for _ in range(C16_ROUNDS):
        for name, make in ways.items():
            server = floor_pid if name == "floor" else pid  # the process doing the relaying
            used, used_here = cpu_seconds(server), time.process_time()
            timed, took = await _concurrently(make, C16, C16_EACH)
            cpu[name] += cpu_seconds(server) - used
            own[name] += time.process_time() - used_here
            c16[name] += timed
            rps[name].append(len(timed) / took)

    # The same concurrency held for a while: streams/s in steady state (``_for_a_while``)
    steady: dict[str, list[float]] = {name: [] for name in ways}
    steady_timed: dict[str, list[Timed]] = {name: [] for name in ways}
    for _ in range(STEADY_ROUNDS):
        for name, make in ways.items():
            count, took, after_first = await _for_a_while(make, C16, STEADY_S)
            steady[name].append(count / took)
            steady_timed[name] += after_first

    def ttft(ts: list[Timed]) -> list[float]:
        return [t.first - t.t0 for t in ts]

    d1 = statistics.median(ttft(kept_d))
    d16 = _pct(ttft(c16["direct"]), 99)
    rd = statistics.median(rps["direct"])
    c16_w = c16["whalli"]
    figures: dict[str, float | str] = {
        "ttft_c1_p50_direct_ms": _ms(d1),
        "ttft_c1_p50_whalli_ms": _ms(statistics.median(ttft(kept_w))),
        "ttft_c1_p50_start_ms": _ms(statistics.median(t.started - t.t0 for t in kept_w)),
        "ttft_c1_p50_stream_ms": _ms(statistics.median(t.first - t.started for t in kept_w)),
        "ttft_c1_p50_overhead_ms": _ms(statistics.median(ttft(kept_w)) - d1),
        "ttft_c1_back_to_back_p50_direct_ms": _ms(statistics.median(ttft(kept_warm_d))),
        "ttft_c1_back_to_back_p50_whalli_ms": _ms(statistics.median(ttft(kept_warm_w))),
        "ttft_c1_back_to_back_p50_overhead_ms": _ms(
            statistics.median(ttft(kept_warm_w)) - statistics.median(ttft(kept_warm_d))
        ),
        "ttft_c16_p99_direct_ms": _ms(d16),
        "ttft_c16_p99_whalli_ms": _ms(_pct(ttft(c16_w), 99)),
        "ttft_c16_p99_start_ms": _ms(_pct([t.started - t.t0 for t in c16_w], 99)),
        "ttft_c16_p99_stream_ms": _ms(_pct([t.first - t.started for t in c16_w], 99)),
        "ttft_c16_p50_overhead_ms": _ms(
            statistics.median(ttft(c16_w)) - statistics.median(ttft(c16["direct"]))
        ),
        "ttft_c16_p99_overhead_ms": _ms(_pct(ttft(c16_w), 99) - d16),
        "rps_c16_direct": round(rd, 1),
        "rps_c16_whalli": round(statistics.median(rps["whalli"]), 1),
        "rps_c16_ratio_whalli_vs_direct": round(statistics.median(rps["whalli"]) / rd, 3),
        "api_cpu_ms_per_reply_c16_whalli": round(1000 * cpu["whalli"] / len(c16_w), 2),
        "client_cpu_ms_per_reply_c16_direct": round(1000 * own["direct"] / len(c16["direct"]), 2),
        "client_cpu_ms_per_reply_c16_whalli": round(1000 * own["whalli"] / len(c16_w), 2),
    }
    # The same two ways in one request each: the start answering the reply as events, and
    # the OpenAI-compatible API (the shape LiteLLM's and Portkey's overheads are measured on).
    for name in ("one_request", "v1"):
        w1 = statistics.median(ttft(kept[name]))
        rw = statistics.median(rps[name])
        figures |= {
            f"{name}_ttft_c1_p50_ms": _ms(w1),
            f"{name}_ttft_c1_p50_overhead_ms": _ms(w1 - d1),
            f"{name}_ttft_c16_p99_ms": _ms(_pct(ttft(c16[name]), 99)),
            f"{name}_ttft_c16_p99_overhead_ms": _ms(_pct(ttft(c16[name]), 99) - d16),
            f"{name}_rps_c16": round(rw, 1),
            f"{name}_rps_c16_ratio_vs_direct": round(rw / rd, 3),
            f"{name}_api_cpu_ms_per_reply_c16": round(1000 * cpu[name] / len(c16[name]), 2),
            f"{name}_client_cpu_ms_per_reply_c16": round(1000 * own[name] / len(c16[name]), 2),
        }
    rs = statistics.median(steady["direct"])
    figures |= {
        "rps_c16_steady_direct": round(rs, 1),
        "rps_c16_steady_ratio_whalli_vs_direct": round(statistics.median(steady["whalli"]) / rs, 3),
        **{
            f"{name}_rps_c16_steady_ratio_vs_direct": round(statistics.median(steady[name]) / rs, 3)
            for name in ("one_request", "v1", "floor")
        },
    }
    # TTFT at a steady c=16 (each worker's first reply left out: see _for_a_while), against
    # direct's in the same kind of phase
    sd50 = statistics.median(ttft(steady_timed["direct"]))
    sd99 = _pct(ttft(steady_timed["direct"]), 99)
    figures |= {
        "ttft_c16_steady_p50_direct_ms": _ms(sd50),
        "ttft_c16_steady_p99_direct_ms": _ms(sd99),
    }
    for name in ("whalli", "one_request", "v1", "floor"):
        got = ttft(steady_timed[name])
        figures |= {
            f"{name}_ttft_c16_steady_p50_overhead_ms": _ms(statistics.median(got) - sd50),
            f"{name}_ttft_c16_steady_p99_overhead_ms": _ms(_pct(got, 99) - sd99),
        }
    # The floor relay: what any Python relay adds here (see _floor_relay), and what Whalli's
    # /v1 adds above it (Whalli's own work on the way that is most like it).
    f1 = statistics.median(ttft(kept["floor"]))
    rf = statistics.median(rps["floor"])
    f16 = _pct(ttft(c16["floor"]), 99)
    figures |= {
        "floor_ttft_c1_p50_ms": _ms(f1),
        "floor_ttft_c1_p50_overhead_ms": _ms(f1 - d1),
        "floor_ttft_c16_p99_ms": _ms(f16),
        "floor_ttft_c16_p99_overhead_ms": _ms(f16 - d16),
        "floor_rps_c16": round(rf, 1),
        "floor_rps_c16_ratio_vs_direct": round(rf / rd, 3),
        "floor_relay_cpu_ms_per_reply_c16": round(1000 * cpu["floor"] / len(c16["floor"]), 2),
        "v1_ttft_c1_p50_over_floor_ms": _ms(statistics.median(ttft(kept["v1"])) - f1),
        "v1_ttft_c16_p99_over_floor_ms": _ms(_pct(ttft(c16["v1"]), 99) - f16),
        "v1_rps_c16_ratio_vs_floor": round(statistics.median(rps["v1"]) / rf, 3),
    }
    return figures


def _gaps(ts: list[Timed], gap_ms: int) -> tuple[list[float], list[float], int]:
    """(client gap minus configured gap, client gap minus sent gap), streams attached late."""
    vs_configured: list[float] = []
    vs_sent: list[float] = []
    late = 0
    for t in ts:
        if t.sent[0] < t.attached:  # tokens were waiting in Redis: not a live relay
            late += 1
            continue
        for i in range(1, len(t.arrivals)):
            gap = t.arrivals[i] - t.arrivals[i - 1]
            vs_configured.append(gap - gap_ms / 1000)
            vs_sent.append(gap - (t.sent[i] - t.sent[i - 1]))
    return vs_configured, vs_sent, late


async def _token_gaps(b: Bench, gap_ms: int) -> dict[str, float | str]:
    directive = f"[tokens={GAP_TOKENS} delay={gap_ms} first={GAP_FIRST_MS}]"
    direct = _kept(await asyncio.gather(*(b.straight(directive) for _ in range(GAP_STREAMS))))
    whalli = _kept(await asyncio.gather(*(b.whalli(directive) for _ in range(GAP_STREAMS))))
    d_conf, d_sent, _ = _gaps(direct, gap_ms)
    w_conf, w_sent, late = _gaps(whalli, gap_ms)
    relay = [a - s for t in whalli for a, s in zip(t.arrivals, t.sent, strict=True)]
    k = f"gap{GAP_STREAMS}x{gap_ms}ms"
    return {
        f"{k}_direct_added_p50_ms": _ms(_pct(d_conf, 50)),
        f"{k}_direct_added_p99_ms": _ms(_pct(d_conf, 99)),
        f"{k}_direct_vs_sent_p99_ms": _ms(_pct(d_sent, 99)),
        f"{k}_whalli_added_p50_ms": _ms(_pct(w_conf, 50)),
        f"{k}_whalli_added_p99_ms": _ms(_pct(w_conf, 99)),
        f"{k}_whalli_vs_sent_p50_ms": _ms(_pct(w_sent, 50)),
        f"{k}_whalli_vs_sent_p99_ms": _ms(_pct(w_sent, 99)),
        f"{k}_whalli_token_latency_p50_ms": _ms(_pct(relay, 50)),
        f"{k}_whalli_token_latency_p99_ms": _ms(_pct(relay, 99)),
        f"{k}_samples": len(w_conf),
        f"{k}_streams_attached_late": late,
    }


async def _idle_wake(b: Bench) -> dict[str, float | str]:
    """GET /api/health back to back, and each after the API sat idle 100 ms (as it does through
    a direct reply in the interleaved c=1 phase): what waking an idle process costs here."""
    busy: list[float] = []
    idle: list[float] = []
    for pause, into in ((0.0, busy), (0.1, idle)):
        for _ in range(IDLE_WAKE_ROUNDS):
            if pause:
                await asyncio.sleep(pause)
            started = time.perf_counter()
            await b.api.request("GET", "/api/health")
            into.append(time.perf_counter() - started)
    return {
        "health_back_to_back_p50_ms": _ms(statistics.median(busy)),
        "health_after_100ms_idle_p50_ms": _ms(statistics.median(idle)),
    }


async def _api_key(b: Bench) -> str:
    created = await b.http.post("/api/keys", json={"name": "bench"}, headers=b.auth)
    if created.status_code != 201:
        raise RuntimeError(f"creating an API key answered {created.status_code}")
    secret: str = created.json()["secret"]
    return secret


async def _cache_hit(b: Bench, redis: Redis) -> dict[str, float | str]:
    hits: list[float] = []
    streams: list[float] = []
    one_request_hits: list[float] = []
    v1_hits: list[float] = []
    bases: list[float] = []
    gets: list[float] = []
    for _ in range(CACHE_ROUNDS + 2):
        prompt = _prompt()
        async with asyncio.timeout(REPLY_TIMEOUT_S * 2):
            await whalli_reply(b.api, b.auth, prompt, cache=True)  # the miss fills the cache
            hit = await whalli_reply(b.api, b.auth, prompt, cache=True)
            # the same cached reply in one request: the start answering events, and /v1
            one = await whalli_one_request_reply(b.api, b.auth, prompt, cache=True)
            # /v1 sends temperature 0 (what it caches): another key, filled by its own miss
            await v1_reply(b.api, b.api_key, prompt)
            v1 = await v1_reply(b.api, b.api_key, prompt)
            v1_hits.append(v1.done - v1.t0)
        if not (hit.cached and one.cached):
            raise RuntimeError("the second identical prompt was not served from the cache")
        keys = [k async for k in redis.scan_iter(match="whalli:cache:*", count=1000)]
        key = keys[0]
        started = time.perf_counter()
        await redis.get(key)
        got = time.perf_counter()
        await b.api.request("GET", "/api/health")
        ended = time.perf_counter()
        await redis.delete(*keys)  # one key in the cache for the next round's scan
        hits.append(hit.done - hit.t0)
        streams.append(hit.done - hit.started)
        one_request_hits.append(one.done - one.t0)
        bases.append(ended - started)
        gets.append(got - started)
    hits, bases, gets = hits[2:], bases[2:], gets[2:]  # the first rounds warm up
    h, base = statistics.median(hits), statistics.median(bases)
    v1_hit = statistics.median(v1_hits[2:])
    stream = statistics.median(streams[2:])
    single = statistics.median(one_request_hits[2:])
    return {
        "cache_hit_reply_ms": _ms(h),
        "cache_redis_get_ms": _ms(statistics.median(gets)),
        "cache_baseline_get_plus_health_ms": _ms(base),
        "cache_hit_ratio_vs_baseline": round(h / base, 2),
        "cache_hit_stream_only_ms": _ms(stream),
        "cache_hit_stream_only_ratio_vs_baseline": round(stream / base, 2),
        "cache_hit_one_request_ms": _ms(single),
        "cache_hit_one_request_ratio_vs_baseline": round(single / base, 2),
        "cache_hit_v1_stream_ms": _ms(v1_hit),
        "cache_hit_v1_ratio_vs_baseline": round(v1_hit / base, 2),
    }


async def _idle_memory(b: Bench, pid: int) -> dict[str, float | str]:
    await asyncio.sleep(1)
    before = rss_kib(pid)
    gate = asyncio.Semaphore(50)

    async def start() -> str:
        async with gate:
            body = {"model": "openai/gpt-4o-mini", "message": _prompt("[hold]"), "cache": False}
            response = await b.http.post("/api/chat/start", json=body, headers=b.auth)
            if response.status_code != 201:
                raise RuntimeError(f"start answered {response.status_code}")
            session: str = response.json()["sessionId"]
            return session

    sessions = await asyncio.gather(*(start() for _ in range(IDLE_STREAMS)))
    await asyncio.sleep(2)  # every generation connected upstream and waits
    generating, generating_fds = rss_kib(pid), open_fds(pid)
    opened = 0
    all_open, leave = asyncio.Event(), asyncio.Event()

    async def hold(session: str) -> None:
        nonlocal opened
        async with b.http.stream("GET", f"/api/chat/stream?sessionId={session}") as response:
            # Keep the iterator: one left behind by a ``break`` is finalised at once, and
            # httpcore then closes the connection (the stream would not stay open).
            chunks = response.aiter_raw()
            await anext(chunks)  # the "retry:" line
            opened += 1
            if opened == IDLE_STREAMS:
                all_open.set()
            await leave.wait()
            await chunks.aclose()

    holders = [asyncio.create_task(hold(s)) for s in sessions]
    try:
        await asyncio.wait_for(all_open.wait(), timeout=60)
        await asyncio.sleep(2)
        streaming, streaming_fds = rss_kib(pid), open_fds(pid)
    finally:
        leave.set()
        await asyncio.gather(*holders, return_exceptions=True)
    return {
        "idle_rss_before_kib": before,
        "idle_kib_per_held_generation": round((generating - before) / IDLE_STREAMS, 1),
        "idle_kib_per_open_sse_stream": round((streaming - generating) / IDLE_STREAMS, 1),
        "idle_kib_per_stream_with_generation": round((streaming - before) / IDLE_STREAMS, 1),
        # proof that the readers' connections were open when measured (one descriptor each)
        "idle_open_sse_fds_added": streaming_fds - generating_fds,
    }


async def _measure(
    api_url: str, provider: str, floor_url: str, redis_url: str, pids: tuple[int, int]
) -> dict[str, float | str]:
    pid, floor_pid = pids
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=2000)
    timeout = httpx.Timeout(60.0)
    async with (
        httpx.AsyncClient(base_url=api_url, limits=limits, timeout=timeout) as http,
        contextlib.aclosing(LeanClient(api_url)) as api,
        contextlib.aclosing(LeanClient(provider)) as direct,
        contextlib.aclosing(LeanClient(floor_url)) as floor,
    ):
        b = Bench(http, api, direct, floor)
        b.auth = await register(http)
        b.api_key = await _api_key(b)
        _say("time to first token (c=1, c=16) and replies per second (c=16)")
        with _client_collector_off():
            figures = await _ttft_and_rps(b, pid, floor_pid)
        figures["ttft_rps_stuck"] = b.stuck
        with _client_collector_off():
            figures |= await _idle_wake(b)
        for gap_ms in GAPS_MS:
            _say(f"token gaps with {GAP_STREAMS} concurrent streams, {gap_ms} ms apart")
            before = b.stuck
            with _client_collector_off():
                figures |= await _token_gaps(b, gap_ms)
            figures[f"gap{GAP_STREAMS}x{gap_ms}ms_stuck"] = b.stuck - before
        redis = Redis.from_url(redis_url, single_connection_client=True)
        try:
            _say("cache hit vs Redis GET + GET /api/health")
            with _client_collector_off():
                figures |= await _cache_hit(b, redis)
        finally:
            await redis.aclose()
        _say(f"memory with {IDLE_STREAMS} idle open streams")
        figures |= await _idle_memory(b, pid)
        figures["stuck_replies_total"] = b.stuck
        figures["failed_replies_total"] = b.failed
    return figures


def _print_api_log(root: Path) -> None:
    for path in [root / "api.log", *sorted((root / "logs").glob("*"))]:
        if path.is_file():
            print(
                f"--- {path.name} (last lines)\n" + "\n".join(path.read_text().splitlines()[-30:])
            )


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the finally blocks stop what we started


def run() -> dict[str, float | str]:
    raise_fd_limit()
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run() -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="whalli-bench-chat-") as tmp:
        root = Path(tmp)
        stack = EmbeddedStack(root / "stack", fast=True)
        urls, started = stack.up()
        fake = api = floor = None
        try:
            Migrator(urls.database_url, default_migrations_dir()).apply()
            fake, provider = start_fake()
            api, api_url = start_api(api_env(urls.as_env(), provider, root), root)
            floor, floor_url = start_floor(provider, root)
            pids = (api.pid, floor.pid)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(_measure(api_url, provider, floor_url, urls.redis_url, pids))
        except BaseException:
            _print_api_log(root)
            raise
        finally:
            if floor is not None:
                stop(floor)
            if fake is not None:
                stop(fake)  # first: held generations then fail at once instead of waiting
            if api is not None:
                stop(api)
            stack.down(only=started)
