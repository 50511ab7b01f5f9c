"""The OpenAI-compatible API: /v1/chat/completions and /v1/models, for OpenAI's SDKs and tools.

Authenticated like every private route (``Authorization: Bearer whk_…``), rate limited by the
app guard, and answered by the same use cases (plan checks, cache, usage records, metrics) as
our own API. Errors use OpenAI's ``{"error": {...}}`` body (openai_wire.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from whalli.adapters.prometheus.chat_metrics import sse_connections
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import InvalidInput, ModelNotFound, WhalliError
from whalli.domain.model.principal import Principal
from whalli.domain.model.tools import ToolCallAssembly
from whalli.domain.services.chat.complete import CompleteChat, CompleteChatHandler
from whalli.domain.services.models.list_models import ListModels, ListModelsHandler
from whalli.entrypoints.http import openai_errors
from whalli.entrypoints.http import openai_replies as replies
from whalli.entrypoints.http import openai_wire as wire
from whalli.entrypoints.http.first_event import FirstEvent
from whalli.entrypoints.http.lean_stream import LastChunk, LeanStream
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY
from whalli.entrypoints.http.sse import HEADERS, MEDIA_TYPE, encode_event
from whalli.ports.chat_model import (
    StreamDelta,
    StreamEnd,
    StreamReasoning,
    StreamRefusal,
    ToolCallDelta,
)

Event = StreamDelta | StreamReasoning | ToolCallDelta | StreamEnd
# The body of a chat completion: room for an image at its largest (MAX_IMAGE_BYTES, 20 MiB,
# is 26.7 MiB of base64) and a conversation (Litestar's default is 10 MB). This is also
# Anthropic's request limit; a larger body is a 413 before it is read whole.
COMPLETION_BODY_MAX = 32 * 1024 * 1024
_json = msgspec.json.Encoder()
_DONE = encode_event(data="[DONE]")
_NOBODY = uuid.UUID(int=0)


def _command(
    principal: Principal | None, data: wire.ChatCompletionRequest, cache_control: str
) -> CompleteChat:
    """The use case's command; ``InvalidInput`` for a request it refuses. Without a principal
    (a check before authenticating: completion_route.py) its user is a placeholder."""
    if data.n not in (None, 1):
        raise InvalidInput("Only one choice (n=1) is supported.", field="n")
    refused = data.unsupported()
    if refused is not None:
        raise refused
    if data.max_tokens is not None and data.max_completion_tokens is not None:
        raise InvalidInput(
            "Setting max_tokens and max_completion_tokens at the same time is not supported; "
            "send max_completion_tokens.",
            field="max_tokens",
        )
    by_new_name = data.max_completion_tokens is not None
    try:
        params = GenerationParams(
            temperature=data.temperature,
            max_tokens=data.max_completion_tokens if by_new_name else data.max_tokens,
            top_p=data.top_p,
            stop=data.stop_sequences(),
            seed=data.seed,
            presence_penalty=data.presence_penalty,
            frequency_penalty=data.frequency_penalty,
            reasoning_effort=data.requested_effort(),
            verbosity=data.requested_verbosity(),
        )
    except InvalidInput as e:
        name = "max_completion_tokens" if by_new_name else "max_tokens"
        raise wire.openai_names(e, max_tokens_as=name) from None
    return CompleteChat(
        user_id=_NOBODY if principal is None else principal.user_id,
        user=None if principal is None else principal.user,
        model=data.model,
        messages=wire.prompt_messages(data.messages),
        params=params,
        tools=data.offered_tools(),
        response_format=data.requested_format(),
        max_tokens_field="max_completion_tokens" if by_new_name else "max_tokens",
        use_cache=wire.use_cache(data, cache_control),
        credential=None if principal is None else principal.credential,
    )


@dataclass(frozen=True)
class _Completion:
    """What every chunk of one completion repeats."""

    id: str
    created: int
    model: str
    include_usage: bool = False  # then every chunk has "usage": null, and a last one the usage

    def chunk(
        self, delta: replies.Delta | replies.OpeningDelta, finish_reason: str | None = None
    ) -> replies.ChatCompletionChunk:
        return replies.ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model,
            choices=[replies.ChunkChoice(delta=delta, finish_reason=finish_reason)],
            usage=None if self.include_usage else msgspec.UNSET,
        )  # fmt: skip


def _data(payload: msgspec.Struct) -> bytes:
    return encode_event(data=_json.encode(payload).decode())


def _tool_delta(event: ToolCallDelta) -> replies.Delta:
    """A piece of a tool call as OpenAI streams it: its first piece (with the id) names the
    call's id, type and function; the next ones add arguments."""
    first = event.id is not None
    piece = replies.ToolCallOut(
        index=event.index, id=event.id, type="function" if first else None,
        function=replies.FunctionCallOut(name=event.name, arguments=event.arguments),
    )  # fmt: skip
    return replies.Delta(tool_calls=[piece])


async def _sse(
    completion: _Completion, first: Event, events: AsyncGenerator[Event, None]
) -> AsyncGenerator[bytes, None]:
    """The chunks: the role, the deltas, the finish reason, the usage if asked for, ``[DONE]``.
    An error after the first chunk can only be told in the stream: an ``{"error": ...}`` chunk
    (which OpenAI's SDKs raise as an ``APIError``), and no ``[DONE]``.

    What is known at once goes in one write: the role's chunk with the first delta (both are
    in hand when the stream opens), and the finish reason's chunk with the usage and ``[DONE]``
    (all told by the last event); every write is a system call and a pass through the ASGI
    stack, and a client reads the chunks the same however they are cut."""
    gauge = sse_connections()
    gauge.inc()
    try:
        opening = None if isinstance(first, ToolCallDelta | StreamRefusal) else ""
        head = _data(completion.chunk(replies.OpeningDelta(content=opening)))
        event = first
        while not isinstance(event, StreamEnd):
            chunk = _data(completion.chunk(_delta(event)))
            if head:
                chunk, head = head + chunk, b""
            yield chunk
            following = await anext(events, None)
            if following is None:
                raise WhalliError("The reply ended without finishing.")
            event = following
        last = completion.chunk(replies.Delta(), replies.finish_reason(event.finish_reason))
        ending = [head, _data(last)]
        if completion.include_usage:
            usage = replies.Usage.of(event.usage)
            ending.append(_data(msgspec.structs.replace(last, choices=[], usage=usage)))
        ending.append(_DONE)
        yield LastChunk(b"".join(ending))  # sent with the body's end: one write
    except WhalliError as e:
        yield LastChunk(_data(openai_errors.error_body(e)))
    finally:
        gauge.dec()
        await events.aclose()


async def _after_silence(
    waiting: FirstEvent[Event],
    heartbeat_s: float,
    opened: Callable[[], _Completion],
    events: AsyncGenerator[Event, None],
) -> AsyncGenerator[bytes, None]:
    """A stream opened before its first event: comments until it comes, then the chunks; a
    refusal that comes instead is an error chunk, as any error after the first chunk."""
    gauge = sse_connections()
    gauge.inc()
    try:
        async for beat in waiting.silence(heartbeat_s):
            yield beat
        try:
            first = waiting.result()
        except StopAsyncIteration:
            first = None
        except WhalliError as e:
            yield LastChunk(_data(openai_errors.error_body(e)))
            return
    finally:
        gauge.dec()
        if not waiting.done():
            await waiting.close()
    if first is None:
        ended = WhalliError("The reply ended without finishing.")
        yield LastChunk(_data(openai_errors.error_body(ended)))
        return
    chunks = _sse(opened(), first, events)
    try:
        async for chunk in chunks:
            yield chunk
    finally:  # closed now (its gauge, the reply), not when collected, when this is closed
        await chunks.aclose()


def _delta(event: StreamDelta | StreamReasoning | ToolCallDelta) -> replies.Delta:
    if isinstance(event, StreamRefusal):
        return replies.Delta(refusal=event.text)
    if isinstance(event, StreamDelta):
        return replies.Delta(content=event.text)
    if isinstance(event, StreamReasoning):  # as DeepSeek, xAI and vLLM stream it
        return replies.Delta(reasoning_content=event.text)
    return _tool_delta(event)


async def _completion(
    completion: _Completion, events: AsyncIterator[Event], answered_by: Callable[[], str | None]
) -> Response[Any]:
    """The whole reply as one ``chat.completion``, naming the model that answered."""
    text: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls = ToolCallAssembly()
    async for event in events:
        if isinstance(event, StreamDelta):
            (refusal if isinstance(event, StreamRefusal) else text).append(event.text)
            continue
        if isinstance(event, StreamReasoning):
            reasoning.append(event.text)
            continue
        if isinstance(event, ToolCallDelta):
            calls.add(event.index, event.id, event.name, event.arguments)
            continue
        body = replies.ChatCompletion(
            id=completion.id, created=completion.created,
            model=answered_by() or completion.model,
            choices=[replies.Choice(
                message=replies.AssistantMessage.of(
                    "".join(text), calls.calls(), "".join(reasoning), "".join(refusal)
                ),
                finish_reason=replies.finish_reason(event.finish_reason),
            )],
            usage=replies.Usage.of(event.usage),
        )  # fmt: skip
        return Response(_json.encode(body), media_type="application/json")
    raise WhalliError("The reply ended without finishing.")


class OpenAICompatController(Controller):
    path = "/v1"
    tags = ["openai-compatible"]
    exception_handlers = openai_errors.openai_exception_handlers()

    @post(
        "/chat/completions",
        status_code=200,
        summary="Create a chat completion (OpenAI-compatible)",
        description="OpenAI's request and response shapes; `stream: true` answers "
        "`text/event-stream` chunks ending with `data: [DONE]`. Model ids are Whalli's. "
        "Tool calling as OpenAI's: `tools` (functions), `tool_choice`, `parallel_tool_calls`; "
        "calls come back in `message.tool_calls` (streamed as `delta.tool_calls` pieces) with "
        "finish reason `tool_calls`, and are answered by `tool` messages. Structured outputs "
        "as OpenAI's: `response_format` `json_object` or `json_schema` (the reply's content is "
        "the JSON). Images as OpenAI's: user messages' `image_url` parts (an https URL or a "
        "base64 data URL, `detail`), for models that read images. The deprecated `functions` "
        "is refused. A request breaking a rule is a 400 `invalid_request_error` naming the "
        "field in `param`, as OpenAI answers it. A body is at most 32 MiB (413).",
        request_max_body_size=COMPLETION_BODY_MAX,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        complete_chat: NamedDependency[CompleteChatHandler],
        data: JSONBody[wire.ChatCompletionRequest],
    ) -> Response[Any]:
        # every line of it (RFC 9110, 5.3): a no-cache in a second one counts too
        cache_control = ", ".join(request.headers.getall("cache-control", []))
        events = complete_chat.stream(_command(principal, data, cache_control))
        include_usage = data.stream_options is not None and data.stream_options.include_usage
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if data.stream:

            def opened() -> _Completion:  # once the model answering is known (a fallback?)
                model = complete_chat.answered_by or data.model
                return _Completion(completion_id, created, model, include_usage)

            # The first event is awaited here, so that a refusal (plan, model, provider down)
            # still gets its own status instead of a 200 stream holding an error; but not for
            # longer than a heartbeat (first_event.py): a thinking model's silence would have
            # proxies cut the connection.
            heartbeat_s = request.app.state[CONTAINER_STATE_KEY].settings.chat_heartbeat_s
            waiting = FirstEvent(events)
            if await waiting.within(heartbeat_s):
                chunks = _sse(opened(), waiting.result(), events)
            else:
                chunks = _after_silence(waiting, heartbeat_s, opened, events)
            return LeanStream(chunks, media_type=MEDIA_TYPE, headers=dict(HEADERS))
        async with contextlib.aclosing(events):
            return await _completion(
                _Completion(completion_id, created, data.model, include_usage),
                events,
                lambda: complete_chat.answered_by,
            )

    @get("/models", summary="The models the caller may use (OpenAI-compatible)")
    async def models(
        self,
        principal: NamedDependency[Principal],
        list_models: NamedDependency[ListModelsHandler],
    ) -> Response[Any]:
        specs = await list_models.execute(ListModels(plan=principal.user.plan))
        # The catalog has no creation dates; a fixed 0 keeps the listing stable.
        entries = [replies.ModelEntry(id=s.id, created=0, owned_by=s.provider) for s in specs]
        return Response(
            _json.encode(replies.ModelList(data=entries)), media_type="application/json"
        )

    @get("/models/{model_id:path}", summary="One model the caller may use (OpenAI-compatible)")
    async def model(
        self,
        principal: NamedDependency[Principal],
        list_models: NamedDependency[ListModelsHandler],
        model_id: FromPath[str],
    ) -> Response[Any]:
        wanted = model_id.removeprefix("/")  # ids hold a slash: "openai/gpt-4o-mini"
        specs = await list_models.execute(ListModels(plan=principal.user.plan))
        spec = next((s for s in specs if s.id == wanted), None)
        if spec is None:  # also one the caller's plan leaves out: as for an unknown one
            raise ModelNotFound(f"The model {wanted!r} does not exist.", field="model")
        entry = replies.ModelEntry(id=spec.id, created=0, owned_by=spec.provider)
        return Response(_json.encode(entry), media_type="application/json")
