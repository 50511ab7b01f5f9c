"""Chat metrics kept in memory, for tests to read back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from whalli.ports.chat_metrics import ChatMetrics


@dataclass
class InMemoryChatMetrics(ChatMetrics):
    cache: Counter[str] = field(default_factory=Counter)
    replies: list[dict[str, object]] = field(default_factory=list)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    ratings: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, rating)
    titles: Counter[str] = field(default_factory=Counter)  # by outcome
    # tokens of calls that are not replies, by (model, provider, "prompt" | "completion")
    tokens: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def cache_lookup(self, *, hit: bool) -> None:
        self.cache["hit" if hit else "miss"] += 1

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
        self.replies.append(
            {"model": model, "provider": provider, "status": status,
             "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "ttft_seconds": ttft_seconds, "total_seconds": total_seconds, "cached": cached}
        )  # fmt: skip

    def provider_error(self, *, provider: str, kind: str) -> None:
        self.errors[(provider, kind)] += 1

    def tokens_used(
        self, *, model: str, provider: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self.tokens[(model, provider, "prompt")] += prompt_tokens
        self.tokens[(model, provider, "completion")] += completion_tokens

    def reply_rated(self, *, model: str, rating: str) -> None:
        self.ratings[(model, rating)] += 1

    def chat_titled(self, *, outcome: str) -> None:
        self.titles[outcome] += 1
