"""What the chat flow reports for dashboards (cache, tokens, latency, provider errors, ratings)."""

from __future__ import annotations

from typing import Protocol


class ChatMetrics(Protocol):
    def cache_lookup(self, *, hit: bool) -> None: ...

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
        """One finished reply (complete, aborted or failed; ``chat_deleted`` when its chat was
        deleted meanwhile, so it was not saved), cached ones included. The latency
        figures are the provider's: a reply from Whalli's own cache (``cached``) never reached
        one, so it counts as a request and its tokens, not in the providers' latencies."""
        ...

    def provider_error(self, *, provider: str, kind: str) -> None: ...

    def tokens_used(
        self, *, model: str, provider: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Tokens of a call that is not a reply (a chat's automatic title), counted with the
        replies' tokens (what providers bill), not as a reply."""
        ...

    def reply_rated(self, *, model: str, rating: str) -> None:
        """One rating stored for a reply of ``model``: ``up`` or ``down`` (given or changed), or
        ``removed`` (a rating taken back). Called once committed; never for a refused request.
        No user goes into a label."""
        ...

    def chat_titled(self, *, outcome: str) -> None:
        """One automatic title job ended: ``titled``, ``kept`` (renamed meanwhile, or an empty
        answer), ``skipped`` (gone, titles off, nothing to title) or ``failed`` (a provider
        error; a retryable one is retried by the queue). No user goes into a label."""
        ...
