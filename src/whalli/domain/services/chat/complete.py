"""Use case: one stateless chat completion (the OpenAI-compatible API), streamed as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Set
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import (
    ModelCatalog,
    ModelSpec,
    check_max_tokens,
    check_reasoning,
    ensure_model_allowed,
)
from whalli.domain.model.chats import (
    GenerationParams,
    MessageStatus,
    PromptMessage,
    TokenUsage,
    check_tool_turns,
)
from whalli.domain.model.errors import (
    InvalidInput,
    InvalidToken,
    ModelNotFound,
    ProviderError,
    ServiceUnavailable,
)
from whalli.domain.model.images import check_images, first_image
from whalli.domain.model.principal import CredentialId
from whalli.domain.model.prompt_cache import (
    CachedReply,
    cache_key,
    decode_cached_reply,
    encode_cached_reply,
    user_scope,
)
from whalli.domain.model.response_format import ResponseFormat
from whalli.domain.model.tools import ToolCallAssembly, Tools
from whalli.domain.model.users import User
from whalli.domain.services.auth.credential_watch import CredentialWatch
from whalli.domain.services.chat import usage_writes
from whalli.domain.services.chat.context import usage_or_estimate
from whalli.domain.services.chat.requests import completion_request, conversation_key
from whalli.domain.services.chat.streaming import close_stream
from whalli.domain.services.chat.usage_writes import unstoppable, write_usage_retrying
from whalli.ports.cache import Cache
from whalli.ports.chat_metrics import ChatMetrics
from whalli.ports.chat_model import (
    ChatModel,
    StreamDelta,
    StreamEnd,
    StreamReasoning,
    StreamRefusal,
    StreamStart,
    ToolCallDelta,
)
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork
from whalli.ports.usage import UsageRecord

log = logging.getLogger(__name__)

Event = StreamDelta | StreamReasoning | ToolCallDelta | StreamEnd
# Finish reasons some OpenAI-compatible servers give a reply that made tool calls.
_PLAIN_ENDS = frozenset({"stop", "end_turn", "unknown"})
CREDENTIAL_ENDED = (
    "The credential of this request ended while it was answered (a revoked key, an ended "
    "session, a disabled or deleted account)."
)

# Usage records are written in tasks of their own, which the cancellation of the request (a
# client that went away) cannot interrupt; kept here so that they are not collected early.


class CompleteChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    # The caller as authentication read it for this request (fresh); saves reading it again.
    user: User | None = None
    model: str  # Whalli's catalog id, e.g. "openai/gpt-4o-mini"
    messages: tuple[PromptMessage, ...]
    params: GenerationParams = GenerationParams()
    tools: Tools | None = None
    response_format: ResponseFormat | None = None  # None: text
    use_cache: bool = True
    # The name the client gave ``params.max_tokens`` (an error about it names that one)
    max_tokens_field: str = "max_tokens"
    # The credential the request proved itself with: the answer ends with it (``watch``)
    credential: CredentialId | None = None


@dataclass
class _Run:
    spec: ModelSpec
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)  # the model declined (OpenAI's refusal)
    calls: ToolCallAssembly = field(default_factory=ToolCallAssembly)
    end: StreamEnd | None = None
    cached: bool = False
    ttft_s: float | None = None
    recorded: bool = False
    started_usage: TokenUsage | None = None  # the prompt's count as the provider began

    def answered(self, end: StreamEnd) -> bool:
        """Whether it is an answer worth replaying: some text, refusal or tool call, ended for
        a reason the provider gave (an empty ``[DONE]`` alone is not)."""
        said = any(self.text) or any(self.refusal) or bool(self.calls)
        return said and end.finish_reason != "unknown"

    @property
    def started(self) -> bool:
        """Whether anything of the reply was passed on (text, reasoning or a piece of a tool
        call)."""
        return bool(self.text) or bool(self.reasoning) or bool(self.refusal) or bool(self.calls)


class CompleteChatHandler:
    """Complete one conversation sent whole by the caller; nothing is stored but usage.

    Rules:
    - the model must be in the catalog with its provider enabled (else ``ModelNotFound``), and
      the caller's plan must include it (``ensure_model_allowed``); there must be messages;
    - an identical prompt (same model, messages and parameters) of the same user (of anyone,
      with ``cache_shared``) is answered from the cache,
      delta by delta as first streamed; only complete replies of the model asked for are cached
      (not a fallback's), and only those with text, a refusal or a tool call and a known end;
      a cache that does not answer (or holds an unreadable entry) counts as a miss;
    - provider failures before the first delta move on to the catalog's fallback models, except
      a provider's refusal of the request as invalid (``ProviderError.falls_back``); after it,
      the ``ProviderError`` ends the stream (partial usage is recorded first);
    - every reply records one usage row (cost 0 when cached) and metrics, including replies cut
      short because the client went away; the usage is recorded before the ``StreamEnd``
      (tried again while the database does not answer, counted once);
    - ``answered_by`` names the catalog model answering (a fallback, when one took over) from
      the first event on;
    - tools (``/v1`` only) go to the model and to its fallbacks that can call tools (a model
      that cannot, ``dev/echo``, refuses them: ``InvalidInput``); a tool turn must answer an
      earlier assistant tool call; a reply with tool calls ends with finish reason
      ``tool_calls`` (unless cut by its length); the tools are part of the cache key and a
      cached reply keeps its tool calls (replayed whole, after its text): a tool call is an
      answer like text, as deterministic at temperature 0;
    - a ``response_format`` (``/v1`` only) goes to the model and to its fallbacks that can
      answer in one (``dev/echo`` cannot: ``InvalidInput``), and is part of the cache key;
    - images (``/v1`` only, user messages only, at most ``MAX_IMAGES``: ``check_images``) go
      to the model and to its fallbacks that read images (``ModelSpec.sees_images``; a model
      that does not refuses them: ``InvalidInput`` naming the first image), and are part of
      the cache key;
    - the conversation is sent whole (nothing is trimmed): a model whose API requires a reply
      cap (Claude's) asked for none is sent what its window leaves after the conversation's
      estimate, at least 1,024 and at most its ``default_max_tokens`` (``untrimmed_reply_cap``);
    - a reply being generated ends with the request's credential (an API key revoked, a login
      session ended, the account disabled or deleted): between its pieces, at the ``watch``'s
      bounded rate (``CredentialWatch``), a credential found ended closes the provider's
      stream, records the usage so far (``aborted``) and raises ``InvalidToken`` (in a /v1
      stream, an error chunk): it has no chat session a ``ReplyStopper`` could reach.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        cache: Cache,
        catalog: ModelCatalog,
        models: Mapping[str, ChatModel],
        enabled_providers: Set[str],
        *,
        clock: Clock,
        ids: IdGenerator,
        metrics: ChatMetrics,
        cache_ttl: timedelta = timedelta(hours=1),
        write_attempts: int = usage_writes.ATTEMPTS,
        write_backoff_s: float = usage_writes.BACKOFF_S,
        cache_shared: bool = False,
        watch: CredentialWatch | None = None,
    ) -> None:
        """``cache_shared``: one cache for every user (else one per user; see prompt_cache)."""
        self._cache_shared, self._watch = cache_shared, watch
        self._uow, self._cache, self._catalog, self._models = uow, cache, catalog, models
        self._write_attempts, self._write_backoff_s = write_attempts, write_backoff_s
        self._enabled = frozenset(enabled_providers)
        self._clock, self._ids, self._metrics = clock, ids, metrics
        self._cache_ttl = int(cache_ttl.total_seconds())
        self.answered_by: str | None = None

    async def stream(self, command: CompleteChat) -> AsyncGenerator[Event, None]:
        """Deltas (text, reasoning, and pieces of tool calls) then one ``StreamEnd``. Raises
        ``ModelNotFound``, ``ModelNotInPlan``, ``AccountDisabled``, ``InvalidInput`` and
        ``ProviderError`` (before the first delta when no candidate model could start)."""
        spec = await self._allowed_model(command)
        started = time.perf_counter()
        scope = None if self._cache_shared else user_scope(command.user_id)
        key = cache_key(
            model_id=spec.id, messages=command.messages, params=command.params, scope=scope,
            tools=command.tools, response_format=command.response_format,
        )  # fmt: skip
        if command.use_cache:
            cached = await self._cached(key)
            self._metrics.cache_lookup(hit=cached is not None)
            if cached is not None:
                self.answered_by = spec.id
                run = _Run(spec=spec, cached=True, ttft_s=0.0)
                usage = cached.usage.replayed()
                run.end = StreamEnd(finish_reason=cached.finish_reason, usage=usage)
                try:
                    for piece in cached.reasoning:
                        run.reasoning.append(piece)
                        yield StreamReasoning(text=piece)
                    for delta in cached.deltas:
                        run.text.append(delta)
                        yield StreamDelta(text=delta)
                    for piece in cached.refusal:
                        run.refusal.append(piece)
                        yield StreamRefusal(text=piece)
                    for index, call in enumerate(cached.tool_calls):
                        run.calls.add(index, call.id, call.name, call.arguments)
                        yield ToolCallDelta(
                            index=index, id=call.id, name=call.name, arguments=call.arguments
                        )
                    yield await self._finish(command, run, started)
                finally:
                    await self._record_if_cut(command, run, started)
                return
        async with contextlib.aclosing(self._generate(command, spec, key, started)) as events:
            async for event in events:
                yield event

    async def _allowed_model(self, command: CompleteChat) -> ModelSpec:
        spec = self._catalog.get(command.model)
        if spec.provider not in self._enabled:
            raise ModelNotFound(f"Model {command.model!r} is not in the catalog.")
        user = command.user
        if user is None or user.id != command.user_id:
            async with self._uow.read_only() as uow:
                user = await uow.users.get(command.user_id)
        ensure_model_allowed(user, spec)
        if not command.messages:
            raise InvalidInput("At least one message is needed.", field="messages")
        check_images(command.messages)
        refused = _refusal(spec, command)
        if refused is not None:
            raise refused
        check_max_tokens(spec, command.params.max_tokens, field=command.max_tokens_field)
        check_tool_turns(command.messages)
        return spec

    async def _cached(self, key: str) -> CachedReply | None:
        try:
            raw = await self._cache.get(key)
            return None if raw is None else decode_cached_reply(raw)
        except (ServiceUnavailable, ValueError):
            return None

    async def _generate(
        self, command: CompleteChat, spec: ModelSpec, key: str, started: float
    ) -> AsyncGenerator[Event, None]:
        last_error: ProviderError | None = None
        check = None
        if self._watch is not None and command.credential is not None:
            check = self._watch.watch(command.user_id, command.credential)
        for candidate in [spec, *self._catalog.fallbacks(spec.id)]:
            model = self._models.get(candidate.provider)
            if model is None or candidate.provider not in self._enabled:
                continue
            if _refusal(candidate, command) is not None:
                continue  # a fallback that would answer without the tools or format asked for
            run = _Run(spec=candidate)
            request = completion_request(
                candidate, command.messages,
                candidate.fitted(command.params),  # (a fallback: max_tokens within its cap)
                tools=command.tools, response_format=command.response_format,
                conversation=conversation_key("v1", command.user_id),
                trimmed=False,  # (sent whole: the default cap is what the window leaves)
            )  # fmt: skip
            events = model.stream(request)
            try:
                async for event in events:
                    if check is not None and await check.ended():  # (nothing of it passed on)
                        raise InvalidToken(CREDENTIAL_ENDED)
                    if isinstance(event, StreamEnd):
                        run.end = event
                        break
                    if isinstance(event, StreamStart):
                        run.started_usage = event.usage
                        continue
                    if isinstance(event, StreamDelta):
                        if not event.text:
                            continue
                        refused = isinstance(event, StreamRefusal)
                        (run.refusal if refused else run.text).append(event.text)
                    elif isinstance(event, StreamReasoning):
                        if not event.text:
                            continue
                        run.reasoning.append(event.text)
                    else:
                        run.calls.add(event.index, event.id, event.name, event.arguments)
                    if run.ttft_s is None:
                        run.ttft_s = time.perf_counter() - started
                        self.answered_by = candidate.id
                    yield event
                if run.end is None:
                    raise ProviderError("The provider ended the stream without finishing it.")
                end = await self._finish(command, run, started)
                self.answered_by = candidate.id  # also when it answered with no text
            except ProviderError as e:
                self._metrics.provider_error(provider=candidate.provider, kind=e.code)
                if run.started or not e.falls_back:  # the reply failed
                    await self._record(command, run, started, MessageStatus.FAILED)
                    raise
                # an attempt that failed before its first delta is no reply (the next model
                # answers, and is counted), as in a chat
                run.recorded = True
                last_error = e
                continue
            finally:
                try:
                    await close_stream(events)
                finally:  # even when closing is interrupted by the request's cancellation
                    await self._record_if_cut(command, run, started)
            # never a fallback's reply, nor an empty one or one whose end is unknown
            if command.use_cache and candidate is spec and run.answered(end):
                await self._store(key, run, end)
            yield end
            return
        # no model could start: a failed reply, counted as a chat's is (nothing to charge)
        await self._record(command, _Run(spec=spec), started, MessageStatus.FAILED)
        raise last_error or ProviderError("No provider is configured for this model.")

    async def _finish(self, command: CompleteChat, run: _Run, started: float) -> StreamEnd:
        assert run.end is not None
        usage = await self._record(command, run, started, MessageStatus.COMPLETE)
        reason = run.end.finish_reason
        if run.calls and reason in _PLAIN_ENDS:
            reason = "tool_calls"
        return StreamEnd(finish_reason=reason, usage=usage)

    async def _store(self, key: str, run: _Run, end: StreamEnd) -> None:
        reply = CachedReply(
            deltas=tuple(run.text), finish_reason=end.finish_reason, usage=end.usage,
            tool_calls=run.calls.calls(), reasoning=tuple(run.reasoning),
            refusal=tuple(run.refusal),
        )  # fmt: skip
        with contextlib.suppress(ServiceUnavailable):  # a reply not cached is only a later miss
            await self._cache.set(key, encode_cached_reply(reply), self._cache_ttl)

    async def _record_if_cut(self, command: CompleteChat, run: _Run, started: float) -> None:
        """Record what a reply that the client abandoned used (nothing if nothing started and
        the provider counted nothing)."""
        if run.recorded or not (run.started or run.started_usage is not None):
            return
        # (its write goes on in a task of its own: see ``_record``; a failure there is logged,
        # nobody being left to tell)
        with contextlib.suppress(asyncio.CancelledError, ServiceUnavailable):
            await self._record(command, run, started, MessageStatus.ABORTED)

    async def _record(
        self, command: CompleteChat, run: _Run, started: float, status: MessageStatus
    ) -> TokenUsage:
        run.recorded = True
        text = "".join(run.reasoning) + "".join(run.text) + "".join(run.refusal) + run.calls.text()
        reported = run.end.usage if run.end is not None else None
        usage = usage_or_estimate(reported, command.messages, text, run.started_usage)
        cost = 0.0 if run.cached else run.spec.price(usage)
        record = UsageRecord.of(
            usage, id=self._ids.new_id(), user_id=command.user_id, message_id=None,
            model=run.spec.id, provider=run.spec.provider,
            cost_usd=cost, cached=run.cached, created_at=self._clock.now(),
        )  # fmt: skip
        self._metrics.reply(
            model=run.spec.id, provider=run.spec.provider, status=str(status),
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            ttft_seconds=run.ttft_s, total_seconds=time.perf_counter() - started,
            cached=run.cached,
        )  # fmt: skip
        # In a task of its own, which a client leaving (the request's cancellation) does not
        # interrupt: the reply is marked recorded, so nothing else would write it.
        await unstoppable(
            write_usage_retrying(  # one INSERT: no BEGIN/COMMIT round trips
                self._uow, lambda uow: uow.usage.add(record),
                attempts=self._write_attempts, backoff_s=self._write_backoff_s,
            )
        )  # fmt: skip
        return usage


def _refusal(spec: ModelSpec, command: CompleteChat) -> InvalidInput | None:
    """Why ``spec`` cannot answer ``command`` as asked (its tools, its format), if it cannot."""
    if command.tools is not None and not spec.calls_tools:
        return InvalidInput(f"Model {spec.id!r} does not call tools.", field="tools")
    if command.response_format is not None and not spec.structured_outputs:
        message = f"Model {spec.id!r} does not answer in a response_format other than text."
        return InvalidInput(message, field="response_format")
    if not spec.sees_images and (image := first_image(command.messages)) is not None:
        return InvalidInput(f"Model {spec.id!r} does not read images.", field=image)
    try:
        check_reasoning(spec, command.params.reasoning_effort, field="reasoning_effort")
    except InvalidInput as refused:
        return refused
    return None
