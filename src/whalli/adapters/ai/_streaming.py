"""What every streaming provider adapter shares: the retry policy, timeouts and error shapes.

Rules (the chat flow depends on them):
- a failure before the first token may be retried here, with exponential backoff and jitter, on
  connection errors, 429 (waiting what Retry-After asks, capped) and 5xx, a bounded number of
  times; other failures are raised at once;
- after the first token (of text, or a piece of a tool call) nothing is retried: the caller
  has already streamed it to a user, so any failure raises ``ProviderError`` with
  ``retryable=False`` and the caller ends the stream;
- the first token must come within ``first_token_timeout`` of the request (a reasoning
  model's: ``reasoning_first_token_timeout``, see ``to_answer``), and each later event
  within ``idle_timeout`` of the previous one; a first-token timeout is not retried here (it would
  multiply the wait) but is ``retryable`` so the caller can fall back to another model;
- the ``StreamEnd`` ends the stream: an adapter yields it as soon as the provider marks the end
  (``[DONE]``, ``message_stop``), without reading on, and nothing is read after it (a provider
  or proxy that keeps the connection open after the end never turns a complete answer into a
  timeout). The response is then closed, not drained: its connection is kept for the next
  request when its body had already ended (the usual case: the end of the body comes with the
  last event), else closed (see ``adapters/http11``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

from whalli.adapters.ai._halves import SurrogateJoiner
from whalli.domain.model.errors import ProviderError, ProviderRateLimited, ProviderRejectedRequest
from whalli.ports.chat_model import CompletionRequest, StreamEnd, StreamEvent, StreamStart

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """Retry and timeout settings (seconds) for one provider."""

    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 30.0
    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 30.0
    # for a model that reasons first (``CompletionRequest.reasons``): OpenAI's reasoning models
    # stream nothing while they think, which takes minutes at a high effort
    reasoning_first_token_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in (
            "connect_timeout", "first_token_timeout", "idle_timeout",
            "reasoning_first_token_timeout",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("backoff_base", "backoff_max", "retry_after_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")

    def to_answer(self, request: CompletionRequest) -> StreamPolicy:
        """The policy for ``request``: a reasoning model's first token may take
        ``reasoning_first_token_timeout`` (if longer)."""
        if not request.reasons or self.reasoning_first_token_timeout <= self.first_token_timeout:
            return self
        return replace(self, first_token_timeout=self.reasoning_first_token_timeout)

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        """How long to wait before the next attempt."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (failed_attempts - 1))
        # "Equal jitter": at least half the backoff, so retries stay spread but never bunch at 0.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def provider_error(
    message: str,
    *,
    provider: str,
    kind: str,
    retryable: bool,
    retry_after: float | None = None,
    **details: object,
) -> ProviderError:
    """A ``ProviderError`` whose details say which provider failed and how (for metrics); of
    kind ``invalid_request`` (the request is at fault), a ``ProviderRejectedRequest``; of kind
    ``rate_limited``, a ``ProviderRateLimited``."""
    cls = {"invalid_request": ProviderRejectedRequest, "rate_limited": ProviderRateLimited}.get(
        kind, ProviderError
    )
    error = cls(message, provider=provider, kind=kind, retry_after=retry_after, **details)
    error.retryable = retryable
    return error


_REASON_CHARS = 64
# A reply's output is bounded by what the model may write: the catalog's cap (``max_tokens``
# asked of a reply is within it; thinking counts too), else this, at a generous 32 characters
# a token (English averages about 4; a token of indentation or of a repeated character runs
# longer): a guard against a stream without end, never a cut of a reply the model may write.
DEFAULT_OUTPUT_TOKENS = 131_072
CHARS_PER_TOKEN = 32


def output_cap_chars(request: CompletionRequest) -> int:
    """The most characters (text, thinking and tool calls together) an adapter passes on for
    ``request`` before it ends the reply as cut by its length: a server that never ends its
    stream (a runaway local model, a hostile one) is not relayed, held and saved without end."""
    tokens = request.max_output_tokens or DEFAULT_OUTPUT_TOKENS
    return max(tokens, request.params.max_tokens or 0) * CHARS_PER_TOKEN


def reason_of(value: object) -> str | None:
    """A finish (stop) reason as a provider gave it, kept to what a reason can be: text of at
    most 64 characters without NUL (which Postgres text cannot hold); ``None`` for none."""
    if value is None or value == "":
        return None
    reason = str(value)[:_REASON_CHARS].replace("\x00", "")
    return reason or None


def is_cut(error: ProviderError) -> bool:
    """Whether ``error`` is a stream cut (``stream_cut``: the connection dropped or closed)."""
    return error.details.get("kind") == "stream_cut"


def stream_cut(provider: str) -> ProviderError:
    return provider_error(
        f"The {provider} stream was cut before it finished (stream cut).",
        provider=provider,
        kind="stream_cut",
        retryable=True,
    )


async def refused(error: ProviderError) -> AsyncGenerator[StreamEvent, None]:
    """A stream failing at once with ``error``: a request refused before the provider is called
    fails where the provider's own refusal would, on iteration (as the caller expects it)."""
    raise error
    yield  # unreachable: makes this an async generator


async def stream_with_retries(
    attempt: Callable[[], AsyncGenerator[StreamEvent, None]],
    *,
    provider: str,
    policy: StreamPolicy,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[StreamEvent]:
    """Run ``attempt`` (one upstream request) under the rules of the module docstring."""
    for number in range(1, policy.max_attempts + 1):
        started = False
        try:
            # aclosing: when the caller closes us, the upstream response closes now, not at GC.
            async with aclosing(_timed(attempt(), provider, policy)) as events:
                async for event in events:
                    # A piece of text or of a tool call: passed on, so never tried again.
                    started = started or not isinstance(event, StreamEnd | StreamStart)
                    yield event
            return
        except ProviderError as error:
            if started:
                error.retryable = False
                raise
            last = number == policy.max_attempts
            if not error.retryable or last or error.details.get("kind") == "timeout":
                raise
            wait = error.details.get("retry_after")
            await sleep(policy.delay(number, wait if isinstance(wait, float) else None))


async def _timed(
    events: AsyncGenerator[StreamEvent, None], provider: str, policy: StreamPolicy
) -> AsyncGenerator[StreamEvent, None]:
    async with aclosing(events):
        limit, waiting_for = policy.first_token_timeout, "the first token"
        watchdog = ReadWatchdog()  # in the task reading the stream (this body runs in it)
        joiner = SurrogateJoiner()  # an emoji split in two escaped halves, whole again
        passed_any = False
        try:
            while True:
                # The limit covers the read only, never the caller's time between events.
                watchdog.arm(limit)
                try:
                    event = await anext(events, None)
                except asyncio.CancelledError:
                    if watchdog.expired():
                        raise provider_error(
                            f"The {provider} provider sent nothing for {limit:g}s "
                            f"waiting for {waiting_for}.",
                            provider=provider,
                            kind="timeout",
                            retryable=True,
                        ) from None
                    raise
                finally:
                    watchdog.disarm()
                if event is None:
                    return
                for passed in joiner.events(event):
                    yield passed
                    passed_any = True
                if isinstance(event, StreamEnd):
                    return  # the answer is complete: nothing after its end is read or waited for
                if not isinstance(event, StreamStart):  # (the prompt's count: no token yet)
                    limit, waiting_for = policy.idle_timeout, "the next token"
        except ProviderError:
            if passed_any:  # the reply fails keeping its text: a half held goes as U+FFFD
                for passed in joiner.left_alone():
                    yield passed
            raise
        finally:
            watchdog.close()


class ReadWatchdog:
    """Cancels the task reading a stream when one read outlasts its limit, like
    ``asyncio.timeout`` around each read, without a timer per read.

    ``asyncio.timeout`` creates a timer and cancels it again for every token (and looks up
    the running loop, a system call on Python 3.11). Here a read only notes its deadline. One
    timer, armed at the first read, fires at the deadline it was armed for; when later reads
    have moved the deadline on meanwhile it re-arms for the new one, so a stream that keeps
    streaming costs one timer per limit's worth of time, not one per token.

    Rules: ``arm`` before the read and ``disarm`` right after it (in a ``finally``); when the
    read raises ``CancelledError``, ``expired()`` says whether the cancellation was this
    watchdog's (it is then absorbed, exactly as ``asyncio.timeout`` absorbs its own) or came
    from elsewhere (to be re-raised); ``close`` when done. A read cancels the task that armed
    it: a generator may be read by one task, then another (``/v1`` awaits a stream's first
    event in a task of its own, the rest in the request's).
    """

    __slots__ = ("_cancelling", "_deadline", "_fired", "_handle", "_loop", "_task", "_when")

    def __init__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a ReadWatchdog runs inside a task")
        self._task, self._loop = task, task.get_loop()
        self._deadline: float | None = None  # None: no read in progress
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0  # when the handle fires
        self._fired = False
        self._cancelling = 0

    def arm(self, seconds: float) -> None:
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        self._task = task = asyncio.current_task() or self._task
        self._cancelling = task.cancelling()
        handle = self._handle
        if handle is None or self._when > deadline:  # none yet, or too late for this read
            if handle is not None:
                handle.cancel()
            self._when, self._handle = deadline, self._loop.call_at(deadline, self._check)

    def disarm(self) -> None:
        self._deadline = None

    def expired(self) -> bool:
        """Whether the ``CancelledError`` the read raised is this watchdog's (absorbed)."""
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # between reads: the next read arms again
        if self._loop.time() < deadline:
            self._when, self._handle = deadline, self._loop.call_at(deadline, self._check)
            return
        self._deadline, self._fired = None, True
        self._task.cancel()
