"""Use case: generate the reply of one chat session into its reply stream, then persist it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chat_titles import TitlePolicy
from whalli.domain.model.chats import (
    GenerationParams,
    Message,
    MessageStatus,
    TokenUsage,
    storable,
    stored_reply_params,
)
from whalli.domain.model.errors import (
    MessageNotFound,
    ProviderError,
    ServiceUnavailable,
)
from whalli.domain.model.jobs import TitleChat
from whalli.domain.model.prompt_cache import (
    CachedReply,
    cache_key,
    decode_cached_reply,
    encode_cached_reply,
    project_scope,
)
from whalli.domain.model.replies import (
    INTERRUPTED_MESSAGE,
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    ReplyEvent,
    TokenEvent,
)
from whalli.domain.services.chat import usage_writes
from whalli.domain.services.chat.context import (
    PreparedReply,
    usage_or_estimate,
)
from whalli.domain.services.chat.requests import completion_request, conversation_key
from whalli.domain.services.chat.streaming import StopBoard, stream_until_stopped
from whalli.domain.services.chat.usage_writes import write_usage_retrying
from whalli.ports.cache import Cache
from whalli.ports.chat_metrics import ChatMetrics
from whalli.ports.chat_model import ChatModel, PromptMessage
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.job_queue import JobQueue
from whalli.ports.reply_stream import ReplyStream
from whalli.ports.unit_of_work import UnitOfWork
from whalli.ports.usage import UsageRecord

log = logging.getLogger(__name__)

NOT_SAVED = ErrorEvent(
    code="reply_not_saved",
    message="The reply could not be saved: the database did not answer. "
    "What was streamed is not in the chat; send the message again.",
)
CHAT_DELETED = ErrorEvent(
    code="chat_deleted",
    message="The chat was deleted while its reply was being written; the reply was not saved.",
)
# The status a reply whose chat was deleted meanwhile is counted under (it was not saved)
CHAT_DELETED_STATUS = "chat_deleted"
INTERNAL = ErrorEvent(code="internal_error", message="The reply failed: an internal error.")
INTERRUPTED = ErrorEvent(code="reply_interrupted", message=INTERRUPTED_MESSAGE)


@dataclass(frozen=True)
class ReplySettings:
    cache_ttl: timedelta = timedelta(hours=1)
    stream_ttl: timedelta = timedelta(minutes=15)
    # the final write is tried again when the database does not answer (a failover, a blip)
    persist_attempts: int = usage_writes.ATTEMPTS
    persist_backoff_s: float = usage_writes.BACKOFF_S  # doubled after each failed attempt
    # a long reply's text so far is stored in its message this often (None: never)
    progress_every_s: float | None = 5.0
    # one cache for everyone (True) or one per project (see prompt_cache: no cross-tenant hits)
    cache_shared: bool = False

    def __post_init__(self) -> None:
        if self.persist_attempts < 1 or self.persist_backoff_s < 0:
            raise ValueError("persist_attempts must be at least 1, persist_backoff_s >= 0")
        if self.progress_every_s is not None and self.progress_every_s < 0:
            raise ValueError("progress_every_s cannot be negative")


class _Progress:
    """Checkpoints of a reply's text and reasoning while it is generated: at most one every
    ``every_s``, the first one ``every_s`` after the start (a short reply writes none), never
    two at once; each in a task of its own, so the tokens never wait for the database.

    While a reasoning model thinks in silence (OpenAI's stream nothing, for minutes), nothing
    would be written: ``watch_silence`` then checkpoints every ``every_s`` all the same, so the
    abandoned-reply sweeper sees the reply alive (one loop timer per such reply)."""

    __slots__ = ("_due", "_every", "_reasoning", "_save", "_task", "_text", "_timer")

    def __init__(self, save: Callable[[str, str], Awaitable[None]], every_s: float | None) -> None:
        self._save, self._every = save, every_s
        self._due = time.monotonic() + (every_s or 0.0)
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []

    def tick(self, text: list[str], reasoning: list[str]) -> None:
        if self._every is None or (self._task is not None and not self._task.done()):
            return
        now = time.monotonic()
        if now >= self._due:
            self._due = now + self._every
            self._task = asyncio.ensure_future(self._save("".join(text), "".join(reasoning)))

    def watch_silence(self, text: list[str], reasoning: list[str]) -> None:
        """Checkpoint ``text`` and ``reasoning`` (as they grow) even while nothing streams."""
        if self._every is None:
            return
        self._text, self._reasoning = text, reasoning
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every, self._silent)

    def _silent(self) -> None:
        assert self._every is not None
        self.tick(self._text, self._reasoning)  # a no-op unless a checkpoint is due
        self._timer = asyncio.get_running_loop().call_later(self._every, self._silent)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def settle(self) -> None:
        """Wait for the checkpoint in flight: the final write must land after it."""
        self.stop()
        if self._task is not None:
            await self._task


class _KeptSession:
    """A reply's session, kept alive while the reply is generated: a reply may outlive its
    session's lifetime (a reasoning model thinks for up to ten minutes first), and without
    its session it could no longer be stopped, resumed or attached to. At a checkpoint past
    half its lifetime, it is saved again for a whole lifetime from then."""

    __slots__ = ("session",)

    def __init__(self, session: ChatSession) -> None:
        self.session = session

    async def renew_if_due(self, sessions: ChatSessionStore, now: datetime) -> None:
        session = self.session
        lifetime = session.expires_at - session.created_at
        if session.expires_at - now > lifetime / 2:
            return
        renewed = msgspec.structs.replace(session, expires_at=now + lifetime)
        try:
            await sessions.save(renewed, now)
        except Exception as e:  # best effort, as the checkpoint: tried again at the next one
            log.warning("reply session not renewed: %r", e)
            return
        self.session = renewed


def _fitted(
    candidate: ModelSpec, spec: ModelSpec, session: ChatSession, prepared: PreparedReply
) -> tuple[tuple[PromptMessage, ...], GenerationParams] | None:
    """The prompt and parameters ``candidate`` is sent: the model asked for, the prompt as
    prepared (nothing built again); a fallback, built for its own window, a ``maxTokens`` it
    cannot hold cut (``PromptSource.for_fallback``; ``None``: it cannot take the message). A
    fallback that does not take the effort answers without it (a preference, unlike an image
    the model could not see), and writes at most what it can."""
    if candidate.id == spec.id or prepared.source is None:
        return prepared.prompt, candidate.fitted(session.params)
    return prepared.source.for_fallback(candidate, session.params)


def _worth_caching(outcome: _Outcome) -> bool:
    """A successful completion: some text, ended for a reason the provider gave. An empty
    reply (``[DONE]`` alone, or only a call of a tool the chat never offered) or one whose end
    is ``unknown`` is saved as it is, but never replayed to the next identical question."""
    return any(outcome.text) and outcome.finish_reason != "unknown"


@dataclass
class _Outcome:
    spec: ModelSpec
    status: MessageStatus = MessageStatus.COMPLETE
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    usage: TokenUsage | None = None
    started_usage: TokenUsage | None = None  # the prompt's count as the provider began
    finish_reason: str = "stop"
    cached: bool = False
    error: ProviderError | None = None
    ttft_ms: int | None = None
    # as sent to ``spec`` (a fallback's own: ``PromptSource.for_fallback``); unset: as prepared
    prompt: tuple[PromptMessage, ...] | None = None
    params: GenerationParams | None = None


class GenerateReplyHandler:
    """Generate one session's reply; every SSE client reads it from the reply stream.

    Rules:
    - exactly one generator per session: the start that prepared the reply launches it once
      (the prompt, the chat's earlier messages trimmed to the model's window plus the new
      message and its files' text, was built by ``StartChat``);
    - an identical prompt (same model, context and parameters) is answered from the cache token
      by token; only complete replies of the model asked for, with text and a known finish
      reason, are cached, never errors, partial or empty ones or a fallback's;
    - provider failures before the first token move on to the catalog's fallback models, except
      a provider's refusal of the request as invalid (``ProviderError.falls_back``), and to a
      fallback only if it reads images when the prompt has attached images (one that takes
      no reasoning effort is asked without the one asked for); a fallback is sent the prompt
      built for its own window, never asked for more tokens than that holds, and skipped
      when the new message does not fit it (``prompt_source``); after the
      first token an error ends the stream with ``error`` and a ``failed`` message keeping the
      partial text;
    - a stop request closes the upstream call and saves the partial reply as ``aborted``;
    - while a long reply is generated, its text so far is stored in its message (``streaming``)
      every ``progress_every_s``, so a reply whose process dies keeps most of its text; at
      those checkpoints its session is renewed once past half its lifetime, so a reply that
      outlives it can still be stopped, resumed and attached to;
    - the assistant message records content, model, provider, usage, cost, time to first token,
      total time, cached flag, finish reason and status; usage is recorded per user and model;
    - a cache that does not answer is a miss (and a reply it cannot store is only not cached):
      it never fails the reply;
    - the final write is tried again, with backoff, while the database does not answer; a
      reply whose chat was deleted meanwhile still records its usage (without the message),
      and is counted in the metrics as ``chat_deleted``, not as its status;
    - every reply's stream ends with a final event, whatever happens: when the reply cannot be
      saved, or anything else fails, readers get an ``error`` (``reply_not_saved``,
      ``chat_deleted``, ``internal_error``) instead of waiting for a ``done`` that never comes;
      after an ``internal_error`` the reply is saved ``failed`` (text so far kept), not left
      ``pending`` for the sweeper;
    - the first reply of a chat the start created (``PreparedReply.first_of_new_chat``), once
      saved ``complete`` with text, queues the chat's automatic title (``TitleChat``, one
      enqueue) after its final event was published, unless ``titles`` says that chat keeps its
      title (titles off, a reply of the dev model); a queue that fails is logged and ignored.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        stream: ReplyStream,
        cache: Cache,
        catalog: ModelCatalog,
        models: Mapping[str, ChatModel],
        *,
        clock: Clock,
        ids: IdGenerator,
        metrics: ChatMetrics,
        stops: StopBoard,
        settings: ReplySettings | None = None,
        jobs: JobQueue | None = None,
        titles: TitlePolicy | None = None,
        sessions: ChatSessionStore | None = None,
    ) -> None:
        """``stops`` is the process's one stop poller (shared by every reply it generates);
        without ``jobs`` no chat is queued for a title; with ``sessions``, a reply's session is
        kept alive while it is generated (at its checkpoints: ``_KeptSession``)."""
        self._uow, self._stream, self._cache, self._metrics = uow, stream, cache, metrics
        self._sessions = sessions
        self._stops = stops
        self._catalog, self._models, self._clock, self._ids = catalog, models, clock, ids
        self._settings = settings or ReplySettings()
        self._jobs, self._titles = jobs, titles or TitlePolicy()

    async def execute(
        self, session: ChatSession, prepared: PreparedReply, saved: Awaitable[None]
    ) -> UUID:
        """Generate the reply ``StartChat`` prepared (its pending message and prompt). ``saved``
        resolves once the start committed: the reply streams at once but is persisted only
        after it. Anything raised is raised after the readers got an ``error``."""
        try:
            return await self._execute(session, prepared, saved)
        except asyncio.CancelledError:
            # Cancelled (a shutdown past its grace and its stop): ended ``failed`` with its
            # text as last checkpointed, and its readers told, rather than left ``streaming``
            # for the sweeper; shielded, as the cancellation repeats at every await.
            ending = asyncio.ensure_future(self._interrupted(session, prepared.reply.id, saved))
            with contextlib.suppress(BaseException):
                await asyncio.shield(ending)
            raise
        except Exception as e:
            final = NOT_SAVED if isinstance(e, ServiceUnavailable) else INTERNAL
            with contextlib.suppress(ServiceUnavailable):  # local readers still get it
                await self._publish(session, final)
            if final is INTERNAL:
                await self._fail(prepared.reply.id, saved, final.message)
            raise

    async def _interrupted(
        self, session: ChatSession, reply_id: UUID, saved: Awaitable[None]
    ) -> None:
        with contextlib.suppress(Exception):  # local readers still get it
            await self._publish(session, INTERRUPTED)
        await self._fail(reply_id, saved, INTERRUPTED.message)

    async def _fail(self, reply_id: UUID, saved: Awaitable[None], error: str) -> None:
        """After an unexpected failure: the reply ends ``failed`` (with its text so far) once
        the start committed, instead of staying ``pending`` until the sweeper finds it."""
        committed = asyncio.ensure_future(saved)
        await asyncio.wait([committed])
        if committed.cancelled() or committed.exception() is not None:
            return  # the start failed: there is no reply to fail
        try:
            async with self._uow.autocommit() as uow:
                await uow.chats.fail_reply(reply_id, self._clock.now(), error)
        except Exception:  # the sweeper still ends it later
            log.warning(
                "Reply %s was not marked failed; the sweeper will.", reply_id, exc_info=True
            )

    async def _execute(
        self, session: ChatSession, prepared: PreparedReply, saved: Awaitable[None]
    ) -> UUID:
        spec = self._catalog.get(session.model)
        started = time.perf_counter()
        # launched once by the start that prepared it: nobody else generates it
        await self._stream.begin(session.id, int(self._settings.stream_ttl.total_seconds()))
        messages, reply = prepared.prompt, prepared.reply
        scope = None if self._settings.cache_shared else project_scope(session.project_id)
        key = cache_key(model_id=spec.id, messages=messages, params=session.params, scope=scope)
        outcome = await self._from_cache(session, spec, key) if session.use_cache else None
        if session.use_cache:
            self._metrics.cache_lookup(hit=outcome is not None)
        if outcome is None:
            kept = _KeptSession(session)
            progress = _Progress(
                lambda text, reasoning: self._checkpoint(kept, reply.id, text, reasoning),
                self._checkpoint_every(session),
            )
            try:
                outcome = await self._generate(session, spec, prepared, progress)
            finally:
                progress.stop()
            await progress.settle()
        total_s = time.perf_counter() - started
        await saved  # the pending message exists once the start committed
        sent = messages if outcome.prompt is None else outcome.prompt
        final, stored = await self._persist(session, reply, outcome, sent, int(total_s * 1000))
        self._metrics.reply(
            model=outcome.spec.id,
            provider=outcome.spec.provider,
            status=str(final.status) if stored else CHAT_DELETED_STATUS,
            prompt_tokens=final.usage.prompt_tokens,
            completion_tokens=final.usage.completion_tokens,
            ttft_seconds=None if outcome.ttft_ms is None else outcome.ttft_ms / 1000,
            total_seconds=total_s,
            cached=outcome.cached,
        )
        if not stored:  # the chat was deleted meanwhile: its usage was recorded alone
            await self._publish(session, CHAT_DELETED)
            return reply.id
        # A fallback's reply is not cached under the key of the model asked for: the next
        # identical question may get that model's own answer.
        answered_as_asked = outcome.spec.id == spec.id
        if (
            outcome.status is MessageStatus.COMPLETE
            and not outcome.cached
            and session.use_cache
            and answered_as_asked
            and _worth_caching(outcome)
        ):
            cached = CachedReply(
                deltas=tuple(outcome.text), finish_reason=outcome.finish_reason, usage=final.usage,
                reasoning=tuple(outcome.reasoning),
            )  # fmt: skip
            ttl = int(self._settings.cache_ttl.total_seconds())
            with contextlib.suppress(ServiceUnavailable):  # not cached: only a later miss
                await self._cache.set(key, encode_cached_reply(cached), ttl)
        await self._publish(session, self._final_event(final, outcome))
        if prepared.new_chat_title is not None:
            await self._queue_title(session, final, prepared.new_chat_title)
        return final.id

    async def _queue_title(self, session: ChatSession, reply: Message, chat_title: str) -> None:
        """After the final event (``done`` never waits for it): best effort, the chat keeps
        its first-message title when the job cannot be queued."""
        if self._jobs is None or reply.status is not MessageStatus.COMPLETE:
            return
        if not reply.content.strip() or self._titles.model_for(reply.model, reply.provider) is None:
            return
        try:
            await self._jobs.enqueue(TitleChat(chat_id=session.chat_id, expected_title=chat_title))
        except Exception:
            log.warning(
                "Chat %s was not queued for a title; it keeps its own.",
                session.chat_id,
                exc_info=True,
            )

    async def _from_cache(self, session: ChatSession, spec: ModelSpec, key: str) -> _Outcome | None:
        try:
            raw = await self._cache.get(key)
        except ServiceUnavailable:
            return None  # the provider answers instead
        if raw is None:
            return None
        try:
            cached = decode_cached_reply(raw)
        except ValueError:
            return None  # an unreadable entry (older format) is a miss; it gets overwritten
        for piece in cached.reasoning:
            await self._publish(session, ReasoningEvent(delta=piece))
        for delta in cached.deltas:
            await self._publish(session, TokenEvent(delta=delta))
        return _Outcome(
            spec=spec,
            text=list(cached.deltas),
            reasoning=list(cached.reasoning),
            finish_reason=cached.finish_reason,
            cached=True,
            usage=cached.usage.replayed(),
            ttft_ms=0,
        )

    async def _generate(
        self,
        session: ChatSession,
        spec: ModelSpec,
        prepared: PreparedReply,
        progress: _Progress,
    ) -> _Outcome:
        candidates = [spec, *self._catalog.fallbacks(spec.id)]
        conversation = conversation_key("chat", session.chat_id)
        last_error: ProviderError | None = None
        for candidate in candidates:
            model = self._models.get(candidate.provider)
            fitted = None if model is None else _fitted(candidate, spec, session, prepared)
            if model is None or fitted is None:  # (its window cannot hold the new message)
                continue
            messages, params = fitted
            if not candidate.sees_images and any(m.parts for m in messages):
                continue  # attached images: only for models reading them
            outcome = _Outcome(spec=candidate, prompt=messages, params=params)
            # it may think in silence for minutes; and a reply's session is renewed even while
            # its provider is silent
            if candidate.thinks_first or self._sessions is not None:
                progress.watch_silence(outcome.text, outcome.reasoning)
            request = completion_request(candidate, messages, params, conversation=conversation)
            started = time.perf_counter()

            async def on_delta(text: str, outcome: _Outcome = outcome, t0: float = started) -> None:
                if outcome.ttft_ms is None:
                    outcome.ttft_ms = int((time.perf_counter() - t0) * 1000)
                outcome.text.append(text)
                progress.tick(outcome.text, outcome.reasoning)
                await self._publish(session, TokenEvent(delta=text))

            async def on_reasoning(
                text: str, outcome: _Outcome = outcome, t0: float = started
            ) -> None:
                if outcome.ttft_ms is None:  # the first thing the reader sees
                    outcome.ttft_ms = int((time.perf_counter() - t0) * 1000)
                outcome.reasoning.append(text)
                progress.tick(outcome.text, outcome.reasoning)
                await self._publish(session, ReasoningEvent(delta=text))

            try:
                end = await stream_until_stopped(
                    model, request, on_delta, self._stops, session.id, on_reasoning,
                    on_start=functools.partial(setattr, outcome, "started_usage"),
                )  # fmt: skip
            except ProviderError as e:
                self._metrics.provider_error(provider=candidate.provider, kind=e.code)
                if outcome.text or outcome.reasoning or not e.falls_back:  # the reply failed
                    outcome.status, outcome.error = MessageStatus.FAILED, e
                    return outcome
                last_error = e
                continue
            if end is None:
                outcome.status, outcome.finish_reason = MessageStatus.ABORTED, "stopped"
            else:
                outcome.finish_reason, outcome.usage = end.finish_reason, end.usage
            return outcome
        failed = _Outcome(spec=spec, status=MessageStatus.FAILED)
        failed.error = last_error or ProviderError("No provider is configured for this model.")
        return failed

    async def _persist(
        self,
        session: ChatSession,
        reply: Message,
        outcome: _Outcome,
        messages: tuple[PromptMessage, ...],
        total_ms: int,
    ) -> tuple[Message, bool]:
        """The finished reply and its usage, written once, and whether the reply was (not when
        the chat was deleted meanwhile: the usage is then recorded alone)."""
        # as stored: a NUL the model streamed (Postgres text holds none) is shown as U+FFFD
        text, reasoning = storable("".join(outcome.text)), storable("".join(outcome.reasoning))
        # stopped or cut short, the reply is charged an estimate; failed before any text, zero
        usage = usage_or_estimate(outcome.usage, messages, reasoning + text, outcome.started_usage)
        cost = 0.0 if outcome.cached else outcome.spec.price(usage)
        now = self._clock.now()
        message = reply  # as saved pending; this generation is the only writer of that row
        message.model, message.provider = outcome.spec.id, outcome.spec.provider
        # a fallback answered, asked what it takes of it: kept as it was asked (as stored: a
        # stop sequence holding NUL, which JSON in Postgres cannot hold, left out)
        sent = outcome.params
        asked = outcome.spec.fitted(message.params) if sent is None else sent
        message.params = stored_reply_params(asked)
        message.finish(
            status=outcome.status,
            content=text,
            usage=usage,
            now=now,
            finish_reason=outcome.finish_reason if outcome.error is None else "error",
            cost_usd=cost,
            cached=outcome.cached,
            ttft_ms=outcome.ttft_ms,
            total_ms=total_ms,
            error=outcome.error.message if outcome.error else None,
            reasoning=reasoning,
        )
        record = UsageRecord.of(
            usage,
            id=self._ids.new_id(),  # one id for every attempt (see write_usage_retrying)
            user_id=session.user_id,
            message_id=message.id,
            model=outcome.spec.id,
            provider=outcome.spec.provider,
            cost_usd=cost,
            cached=outcome.cached,
            created_at=now,
        )
        try:
            await self._retrying(lambda uow: uow.chats.finish_reply(message, record))
        except MessageNotFound:
            orphan = msgspec.structs.replace(record, message_id=None)
            await self._retrying(lambda uow: uow.usage.add(orphan))
            return message, False
        return message, True

    def _checkpoint_every(self, session: ChatSession) -> float | None:
        """How often a reply checkpoints: every ``progress_every_s``, and at least four times
        in its session's lifetime when it keeps its session alive (``_KeptSession``)."""
        every = self._settings.progress_every_s
        if self._sessions is None:
            return every
        quarter = (session.expires_at - session.created_at).total_seconds() / 4
        return quarter if every is None else min(every, quarter)

    async def _checkpoint(
        self, kept: _KeptSession, message_id: UUID, text: str, reasoning: str
    ) -> None:
        if self._settings.progress_every_s is not None:
            await self._save_progress(message_id, text, reasoning)
        if self._sessions is not None:
            await kept.renew_if_due(self._sessions, self._clock.now())

    async def _save_progress(self, message_id: UUID, text: str, reasoning: str) -> None:
        """Best effort: a checkpoint that fails is only one less (the final write follows)."""
        try:
            async with self._uow.autocommit() as uow:
                await uow.chats.save_progress(
                    message_id, storable(text), self._clock.now(), storable(reasoning)
                )
        except Exception as e:
            log.warning("reply progress not saved: %r", e)

    async def _retrying(self, write: Callable[[UnitOfWork], Awaitable[None]]) -> None:
        await write_usage_retrying(
            self._uow, write,
            attempts=self._settings.persist_attempts, backoff_s=self._settings.persist_backoff_s,
        )  # fmt: skip

    @staticmethod
    def _final_event(message: Message, outcome: _Outcome) -> ReplyEvent:
        if outcome.error is not None:
            return ErrorEvent(
                code=outcome.error.code, message=outcome.error.message, message_id=message.id
            )
        return DoneEvent(
            message_id=message.id,
            cached=message.cached,
            prompt_tokens=message.usage.prompt_tokens,
            completion_tokens=message.usage.completion_tokens,
            finish_reason=message.finish_reason or "stop",
            cost_usd=message.cost_usd,
            status=str(message.status),
            cached_prompt_tokens=message.usage.cached_prompt_tokens,
            cache_write_tokens=message.usage.cache_write_tokens,
            reasoning_tokens=message.usage.reasoning_tokens,
        )

    async def _publish(self, session: ChatSession, event: ReplyEvent) -> None:
        ttl = int(self._settings.stream_ttl.total_seconds())
        await self._stream.publish(session.id, event, ttl)
