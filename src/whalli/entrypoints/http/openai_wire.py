"""OpenAI's wire format for /v1: request and response bodies, stream chunks and error bodies.

Shapes follow OpenAI's Chat Completions and Models APIs, so that the official SDKs work with only
their ``base_url`` changed. Unlike our own API, fields are snake_case and unknown request fields
are ignored (SDKs send options Whalli does not use, such as ``user``), except the deprecated
``functions`` and a response format other than text, which are refused. Tools (function calling)
follow OpenAI's shapes: ``tools``, ``tool_choice``, ``parallel_tool_calls``, assistant messages
with ``tool_calls`` and ``tool`` messages answering them.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, Literal

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from whalli.domain.model.chats import MessageRole, PromptMessage, TokenUsage
from whalli.domain.model.errors import InvalidInput, InvalidToken, RateLimited, WhalliError
from whalli.domain.model.tools import ToolCall, ToolChoice, ToolChoiceMode, Tools, ToolSpec
from whalli.entrypoints.http.problems import GENERIC_DETAIL, status_for

log = structlog.get_logger("whalli.http")

# OpenAI's roles; "developer" is the newer name of "system". The deprecated "function" role
# (answering a ``function_call``) is not supported: "tool" replaced it.
_ROLES = {
    "system": MessageRole.SYSTEM,
    "developer": MessageRole.SYSTEM,
    "user": MessageRole.USER,
    "assistant": MessageRole.ASSISTANT,
    "tool": MessageRole.TOOL,
}
_CHOICE_MODES = {"none", "auto", "required"}
# The finish reasons OpenAI clients know; providers' own spellings map onto them.
_FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls", "function_call"}
_LENGTH_REASONS = {"length", "max_tokens", "max_output_tokens"}


# --- requests ---------------------------------------------------------------------------------
class ContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: str | None = None


class FunctionCallIn(msgspec.Struct, kw_only=True):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCallIn(msgspec.Struct, kw_only=True):
    id: str
    function: FunctionCallIn
    type: str = "function"


class ChatMessageIn(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None  # an assistant's
    tool_call_id: str | None = None  # a tool's: the call it answers


class FunctionIn(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema object
    strict: bool | None = None


class ToolIn(msgspec.Struct, kw_only=True):
    type: str
    function: FunctionIn


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True):
    type: str
    function: NamedFunction


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ResponseFormat(msgspec.Struct, kw_only=True):
    type: str


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[ChatMessageIn]
    stream: bool | None = None  # OpenAI's "boolean or null"
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stream_options: StreamOptions | None = None
    n: int | None = None
    # Whalli's own: the prompt cache for this request (true, false); unset: only at
    # temperature 0, so that a client asking again for a sample (Regenerate) gets a new one.
    cache: bool | None = None
    tools: list[ToolIn] | None = None  # an empty list is no tools
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Refused when asked for (422) rather than ignored: an answer without them is not the one
    # the client expects (a function call in the deprecated shape, JSON).
    functions: list[Any] | None = None
    response_format: ResponseFormat | None = None

    def unsupported(self) -> InvalidInput | None:
        """What this request asks for that Whalli cannot give, as the error to answer."""
        if self.functions:
            return InvalidInput(
                "Function calling by `functions` is not supported; use `tools`.",
                field="functions",
            )
        if self.response_format is not None and self.response_format.type != "text":
            return InvalidInput(
                f"response_format {self.response_format.type!r} is not supported (only 'text').",
                field="response_format",
            )
        return None

    def offered_tools(self) -> Tools | None:
        """The tools, tool choice and ``parallel_tool_calls``; ``None`` without tools. Raises
        ``InvalidInput`` (see ``Tools``; also a ``tool_choice`` but ``none`` without tools)."""
        choice = _tool_choice(self.tool_choice)
        if not self.tools:
            if choice is not None and choice.mode is not ToolChoiceMode.NONE:
                # "none" asks for no call, which a request without tools gives: clients send it
                raise InvalidInput("tool_choice needs tools to choose from.", field="tool_choice")
            return None
        specs = []
        for index, tool in enumerate(self.tools):
            if tool.type != "function":
                raise InvalidInput(
                    f"Tools of type {tool.type!r} are not supported (only 'function').",
                    field=f"tools[{index}].type",
                )
            function = tool.function
            specs.append(
                ToolSpec(
                    name=function.name,
                    description=function.description,
                    parameters=function.parameters,
                    strict=function.strict,
                )
            )
        return Tools(specs=tuple(specs), choice=choice, parallel=self.parallel_tool_calls)

    def stop_sequences(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def prompt_messages(messages: list[ChatMessageIn]) -> tuple[PromptMessage, ...]:
    """Our messages; text parts of a message are joined. Raises ``InvalidInput``."""
    converted = []
    for index, message in enumerate(messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidInput(
                f"Role {message.role!r} is not supported.", field=f"messages[{index}].role"
            )
        content = _text(message.content, index)
        if message.tool_calls and role is MessageRole.ASSISTANT:
            calls = tuple(_tool_call(call, index, n) for n, call in enumerate(message.tool_calls))
            converted.append(PromptMessage(role=role, content=content, tool_calls=calls))
        elif role is MessageRole.TOOL:
            converted.append(
                PromptMessage(role=role, content=content, tool_call_id=message.tool_call_id)
            )
        else:
            converted.append(PromptMessage(role=role, content=content))
    return tuple(converted)


def _tool_call(call: ToolCallIn, index: int, number: int) -> ToolCall:
    if call.type != "function":
        raise InvalidInput(
            f"Tool calls of type {call.type!r} are not supported (only 'function').",
            field=f"messages[{index}].tool_calls[{number}].type",
        )
    return ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)


def _tool_choice(choice: str | NamedToolChoice | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _CHOICE_MODES:
            raise InvalidInput(
                f"tool_choice {choice!r} is not one of 'none', 'auto', 'required' or a function.",
                field="tool_choice",
            )
        return ToolChoice(mode=ToolChoiceMode(choice))
    if choice.type != "function":
        raise InvalidInput(
            f"tool_choice of type {choice.type!r} is not supported (only 'function').",
            field="tool_choice",
        )
    return ToolChoice(mode=ToolChoiceMode.FUNCTION, name=choice.function.name)


def _text(content: str | list[ContentPart] | None, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise InvalidInput(
                f"Content of type {part.type!r} is not supported; send text.",
                field=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "".join(texts)


def finish_reason(reason: str) -> str:
    if reason in _LENGTH_REASONS:
        return "length"
    if reason == "refusal":  # Anthropic's: the model declined, for safety
        return "content_filter"
    return reason if reason in _FINISH_REASONS else "stop"


def use_cache(request: ChatCompletionRequest, cache_control: str) -> bool:
    """Whether the prompt cache may answer (and store) this request: not with ``Cache-Control:
    no-cache`` or ``no-store``; else as ``cache`` says; else only at temperature 0, where an
    identical answer is what the client asked for (a sample asked for again must differ)."""
    directives = {d.strip().lower() for d in cache_control.split(",")}
    if directives & {"no-cache", "no-store"}:
        return False
    if request.cache is not None:
        return request.cache
    return request.temperature == 0


def openai_names(error: InvalidInput, *, max_tokens_as: str) -> InvalidInput:
    """A parameter error in OpenAI's names: ``maxTokens`` as the field the client sent
    (``max_tokens`` or ``max_completion_tokens``), any other camelCase name in snake_case."""
    field = error.details.get("field")
    if not isinstance(field, str):
        return error
    name = max_tokens_as if field == "maxTokens" else _snake(field)
    details = {**error.details, "field": name}
    return InvalidInput(error.message.replace(field, name), **details)


# --- responses --------------------------------------------------------------------------------
class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: TokenUsage) -> Usage:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total,
        )


class FunctionCallOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A whole call (a completion), or in a chunk a piece of one: ``index``, and ``id``,
    ``type`` and ``function.name`` on its first piece only."""

    function: FunctionCallOut
    index: int | None = None
    id: str | None = None
    type: Literal["function"] | None = None


class AssistantMessage(msgspec.Struct, kw_only=True):
    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: None = None
    tool_calls: list[ToolCallOut] | msgspec.UnsetType = msgspec.UNSET  # only when it made some

    @classmethod
    def of(cls, text: str, calls: tuple[ToolCall, ...]) -> AssistantMessage:
        """``content`` is null when the message is only tool calls."""
        if not calls:
            return cls(content=text)
        return cls(
            content=text or None,
            tool_calls=[
                ToolCallOut(
                    id=call.id,
                    type="function",
                    function=FunctionCallOut(name=call.name, arguments=call.arguments),
                )
                for call in calls
            ],
        )


class Choice(msgspec.Struct, kw_only=True):
    message: AssistantMessage
    finish_reason: str
    index: int = 0
    logprobs: None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: None = None


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class OpeningDelta(msgspec.Struct, kw_only=True):
    """The first chunk's delta, as OpenAI sends it: the role, and ``content`` ``""`` for a
    reply in text or ``null`` for one that opens with a tool call (so that a client joining
    the chunks gets what the whole reply would have said)."""

    role: str = "assistant"
    content: str | None


class ChunkChoice(msgspec.Struct, kw_only=True):
    delta: Delta | OpeningDelta
    finish_reason: str | None = None
    index: int = 0
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: None = None
    # Present (null until the last chunk) only when the client asked for usage.
    usage: Usage | msgspec.UnsetType | None = msgspec.UNSET


class ModelEntry(msgspec.Struct, kw_only=True):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, kw_only=True):
    data: list[ModelEntry]
    object: Literal["list"] = "list"


# --- errors -----------------------------------------------------------------------------------
class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    code: str | None
    param: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status (clients mostly dispatch on the status itself)."""
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )


def error_body(error: WhalliError) -> ErrorBody:
    field = error.details.get("field")
    return ErrorBody(
        error=ErrorDetail(
            message=error.message,
            type=error_type(status_for(error)),
            code=error.code,
            param=_snake(field) if isinstance(field, str) else None,
        )
    )


_MISSING_FIELD = re.compile(r"missing required field `(\w+)`")


def _snake(field: str) -> str:
    """OpenAI's name of a request field our errors name in camelCase (``maxTokens``)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), field)


def _response(status: int, body: ErrorBody, headers: dict[str, str]) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def handle_openai_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Every error under /v1 as ``{"error": {"message", "type", "param", "code"}}``; statuses
    come from problems.py's one mapping."""
    headers: dict[str, str] = {}
    if isinstance(exc, WhalliError):
        status = status_for(exc)
        if status == 401:
            invalid = isinstance(exc, InvalidToken)
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if invalid else "Bearer"
        if isinstance(exc, RateLimited) and "retry_after" in exc.details:
            headers["Retry-After"] = str(exc.details["retry_after"])
        if status >= 500:
            log.error("request failed", code=exc.code, exc_info=exc)
        return _response(status, error_body(exc), headers)
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return _response(exc.status_code, _http_error(exc), dict(exc.headers or {}))
    log.error("unhandled exception", exc_info=exc)
    detail = ErrorDetail(message=GENERIC_DETAIL, type="server_error", code="internal_error")
    return _response(500, ErrorBody(error=detail), headers)


def _http_error(exc: HTTPException) -> ErrorBody:
    """Litestar's own errors (a body that does not decode, an unknown method): its validation
    errors name the field and the rule, never more than the client's own input."""
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    message, param = exc.detail, None
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        first = exc.extra[0]
        said = str(first.get("message", ""))
        message = f"{message}: {said}".rstrip(": ")
        param = first.get("key") if isinstance(first.get("key"), str) else None
        missing = _MISSING_FIELD.search(said)
        if missing and param == "data":  # the body lacks a field: name it, not the body
            param = missing.group(1)
    detail = ErrorDetail(message=message, type=error_type(exc.status_code), code=code, param=param)
    return ErrorBody(error=detail)


def openai_exception_handlers() -> ExceptionHandlersMap:
    # Exception itself too: the app's handler would answer problem+json, which SDKs cannot read.
    return {Exception: handle_openai_exception}
