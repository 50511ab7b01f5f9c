"""Chat metrics in Prometheus (aggregated across processes like the HTTP metrics)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whalli.ports.chat_metrics import ChatMetrics

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

# Time to first token and whole replies: from tens of milliseconds to minutes.
REPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True, slots=True)
class _Collectors:
    cache_hits: Counter
    cache_misses: Counter
    requests: Counter
    tokens: Counter
    ttft: Histogram
    total: Histogram
    provider_errors: Counter
    ratings: Counter
    titles: Counter
    sse_connections: Gauge


@functools.cache
def _collectors() -> _Collectors:
    from prometheus_client import Counter, Gauge, Histogram

    return _Collectors(
        cache_hits=Counter("whalli_chat_cache_hits_total", "Identical-prompt cache hits."),
        cache_misses=Counter("whalli_chat_cache_misses_total", "Identical-prompt cache misses."),
        requests=Counter(
            "whalli_chat_requests_total", "Replies by model, provider and status.",
            ["model", "provider", "status"],
        ),
        tokens=Counter(
            "whalli_chat_tokens_total", "Tokens by model, provider and kind (prompt/completion).",
            ["model", "provider", "kind"],
        ),
        ttft=Histogram(
            "whalli_chat_ttft_seconds", "Time to first token by provider.", ["provider"],
            buckets=REPLY_BUCKETS,
        ),
        total=Histogram(
            "whalli_chat_reply_seconds", "Whole reply time by provider.", ["provider"],
            buckets=REPLY_BUCKETS,
        ),
        provider_errors=Counter(
            "whalli_provider_errors_total", "Provider failures by provider and kind.",
            ["provider", "kind"],
        ),
        ratings=Counter(
            "whalli_chat_ratings_total",
            "Reply ratings stored, by model of the rated reply and rating (up/down/removed).",
            ["model", "rating"],
        ),
        titles=Counter(
            "whalli_chat_titles_total",
            "Automatic chat title jobs by outcome (titled/kept/skipped/failed).",
            ["outcome"],
        ),
        sse_connections=Gauge(
            "whalli_sse_connections_active", "Open SSE streams (chat replies, file events).",
            multiprocess_mode="livesum",
        ),
    )  # fmt: skip


def sse_connections() -> Gauge:
    return _collectors().sse_connections


class PrometheusChatMetrics(ChatMetrics):
    def cache_lookup(self, *, hit: bool) -> None:
        c = _collectors()
        (c.cache_hits if hit else c.cache_misses).inc()

    def reply(
        self,
        *,
        model: str,
        provider: str,
        status: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_seconds: float | None,
        total_seconds: float,
        cached: bool = False,
    ) -> None:
        c = _collectors()
        c.requests.labels(model, provider, status).inc()
        self.tokens_used(
            model=model, provider=provider,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        )  # fmt: skip
        if cached:  # no provider answered it: kept out of the providers' latencies
            return
        if ttft_seconds is not None:
            c.ttft.labels(provider).observe(ttft_seconds)
        c.total.labels(provider).observe(total_seconds)

    def provider_error(self, *, provider: str, kind: str) -> None:
        _collectors().provider_errors.labels(provider, kind).inc()

    def tokens_used(
        self, *, model: str, provider: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        c = _collectors()
        c.tokens.labels(model, provider, "prompt").inc(prompt_tokens)
        c.tokens.labels(model, provider, "completion").inc(completion_tokens)

    def reply_rated(self, *, model: str, rating: str) -> None:
        _collectors().ratings.labels(model, rating).inc()

    def chat_titled(self, *, outcome: str) -> None:
        _collectors().titles.labels(outcome).inc()
