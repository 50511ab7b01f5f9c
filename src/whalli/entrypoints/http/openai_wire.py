"""OpenAI's wire format for /v1, requests: the Chat Completions request body, read into the
domain's prompt, parameters, tools and response format.

Shapes follow OpenAI's Chat Completions and Models APIs, so that the official SDKs work with only
their ``base_url`` changed. Unlike our own API, fields are snake_case and unknown request fields
are ignored (SDKs send options Whalli does not use, such as ``user``), except the deprecated
``functions``, which is refused. Tools (function calling) follow OpenAI's shapes: ``tools``,
``tool_choice``, ``parallel_tool_calls``, assistant messages with ``tool_calls`` and ``tool``
messages answering them. ``response_format`` too: ``text`` (the default, no format),
``json_object`` (JSON mode) or ``json_schema`` (structured outputs: ``name``, ``schema``,
``strict``, ``description``), checked as OpenAI checks them (``domain.model.response_format``).
Images (vision): user messages' ``image_url`` content parts (an ``https:``/``http:`` URL or a
base64 ``data:`` URL of a PNG, JPEG, GIF or WebP image, ``detail``), kept in order with the
text parts and sent on as received to models that read images (``domain.model.images`` has the
rules and limits; Whalli never fetches an image URL, the provider does).
Replies: ``openai_replies``; errors: ``openai_errors``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from whalli.domain.model.chats import MessageRole, PromptMessage, ReasoningEffort, Verbosity
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.images import ImagePart, image_part
from whalli.domain.model.response_format import ResponseFormat, response_format
from whalli.domain.model.tools import ToolCall, ToolChoice, ToolChoiceMode, Tools, ToolSpec
from whalli.entrypoints.http.openai_errors import snake_field

# OpenAI's roles; "developer" is the newer name of "system". The deprecated "function" role
# (answering a ``function_call``) is not supported: "tool" replaced it.
_Choice = TypeVar("_Choice", bound=StrEnum)

_ROLES = {
    "system": MessageRole.SYSTEM,
    "developer": MessageRole.SYSTEM,
    "user": MessageRole.USER,
    "assistant": MessageRole.ASSISTANT,
    "tool": MessageRole.TOOL,
}
_CHOICE_MODES = {"none", "auto", "required"}


class ImageUrlIn(msgspec.Struct, kw_only=True):
    # Loosely typed: the domain names the field of what is wrong (see domain.model.images)
    url: Any = None
    detail: Any = None


class ContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: str | None = None
    image_url: ImageUrlIn | None = None  # an image_url part's
    refusal: str | None = None  # an assistant's refusal part's: its words


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
    # an assistant's refusal (as the SDK sends its message back): its words are what it said
    refusal: str | None = None
    name: str | None = None  # who spoke, among several participants


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


class JsonSchemaIn(msgspec.Struct, kw_only=True):
    # Loosely typed: the domain names the field of what is missing or wrong (OpenAI's 400
    # naming it rather than a decoding error)
    name: str | None = None
    schema: Any = None  # a JSON Schema object
    strict: bool | None = None
    description: str | None = None


class ResponseFormatIn(msgspec.Struct, kw_only=True):
    type: str | None = None
    json_schema: JsonSchemaIn | None = None


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
    # Refused when asked for (400) rather than ignored: an answer without it is not the one
    # the client expects (a function call in the deprecated shape).
    functions: list[Any] | None = None
    # Its partner: naming a function to call is refused; "none" and "auto" ask for nothing.
    function_call: str | dict[str, Any] | None = None
    response_format: ResponseFormatIn | None = None
    reasoning_effort: str | None = None  # none, minimal ... xhigh: for reasoning models
    verbosity: str | None = None  # low, medium, high: sent to the models that take it
    # Refused when they ask for something (400 naming them) rather than ignored: each changes
    # the answer the client expects (its log probabilities, tokens banned or favoured, an
    # audio answer, a web search). Their "nothing asked" values are taken.
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    web_search_options: Any = None

    def unsupported(self) -> InvalidInput | None:
        """What this request asks for that Whalli cannot give, as the error to answer."""
        if self.functions:
            return InvalidInput(
                "Function calling by `functions` is not supported; use `tools`.",
                field="functions",
            )
        if self.function_call not in (None, "none", "auto"):
            return InvalidInput(
                "Function calling by `function_call` is not supported; use `tools` and "
                "`tool_choice`.",
                field="function_call",
            )
        if self.modalities and set(self.modalities) != {"text"}:
            return InvalidInput(
                'Only text answers are supported: `modalities` may only be ["text"].',
                field="modalities",
            )
        for field, asked, what in (
            ("logprobs", self.logprobs, "Log probabilities are"),
            ("top_logprobs", self.top_logprobs, "Log probabilities are"),
            ("logit_bias", self.logit_bias, "A logit_bias is"),
            ("audio", self.audio, "Audio answers are"),
            ("web_search_options", self.web_search_options is not None, "Web search is"),
        ):
            if asked:
                return InvalidInput(f"{what} not supported; leave out `{field}`.", field=field)
        return None

    def requested_effort(self) -> ReasoningEffort | None:
        """The reasoning effort asked for (``InvalidInput`` naming ``reasoning_effort`` for a
        value that is none of OpenAI's)."""
        return _one_of(ReasoningEffort, self.reasoning_effort, "reasoning_effort")

    def requested_verbosity(self) -> Verbosity | None:
        """The verbosity asked for (``InvalidInput`` naming ``verbosity`` for another value)."""
        return _one_of(Verbosity, self.verbosity, "verbosity")

    def requested_format(self) -> ResponseFormat | None:
        """The format asked for; ``None`` for text (or none). Raises ``InvalidInput`` naming
        the field (``response_format.json_schema.name``...)."""
        asked = self.response_format
        if asked is None:
            return None
        json_schema = asked.json_schema
        if json_schema is None:
            return response_format(asked.type)
        return response_format(
            asked.type, name=json_schema.name, schema=json_schema.schema,
            strict=json_schema.strict, description=json_schema.description,
            with_json_schema=True,
        )  # fmt: skip

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


def _one_of(choices: type[_Choice], value: str | None, field: str) -> _Choice | None:
    """``value`` as one of ``choices`` (``None`` for none), else ``InvalidInput`` naming
    ``field`` and the values it takes."""
    if value is None:
        return None
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(choice.value for choice in choices)
        raise InvalidInput(f"{field} must be one of {allowed}.", field=field) from None


def prompt_messages(messages: list[ChatMessageIn]) -> tuple[PromptMessage, ...]:
    """Our messages; text parts of a message are joined. Raises ``InvalidInput``."""
    converted = []
    for index, message in enumerate(messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidInput(
                f"Role {message.role!r} is not supported.", field=f"messages[{index}].role"
            )
        assistant = role is MessageRole.ASSISTANT
        content, parts = _content(message.content, index, assistant=assistant)
        if assistant and not content and message.refusal:
            content = message.refusal
        name = _speaker(message.name, index) if role is not MessageRole.TOOL else None
        if parts:  # images (only a user's: check_images refuses the others, naming them)
            converted.append(PromptMessage(role=role, content=content, parts=parts, name=name))
        elif message.tool_calls and role is MessageRole.ASSISTANT:
            calls = tuple(_tool_call(call, index, n) for n, call in enumerate(message.tool_calls))
            converted.append(PromptMessage(role=role, content=content, tool_calls=calls, name=name))
        elif role is MessageRole.TOOL:
            converted.append(
                PromptMessage(role=role, content=content, tool_call_id=message.tool_call_id)
            )
        else:
            converted.append(PromptMessage(role=role, content=content, name=name))
    return tuple(converted)


# OpenAI's rule for a participant's name: no whitespace and none of < | \ / >
_SPEAKER = re.compile(r"[^\s<|\\/>]+")


def _speaker(name: str | None, index: int) -> str | None:
    """A message's ``name`` as OpenAI takes it (``None``: none), else ``InvalidInput``."""
    if name is None:
        return None
    if not _SPEAKER.fullmatch(name):
        field = f"messages[{index}].name"
        raise InvalidInput(
            f"{field} must be a name without spaces or any of < | \\ / >.", field=field
        )
    return name


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


def _content(
    content: str | list[ContentPart] | None, index: int, *, assistant: bool = False
) -> tuple[str, tuple[str | ImagePart, ...]]:
    """The text (text parts joined, an assistant's refusal parts as text) and, when there are
    images, every part in order."""
    if content is None or isinstance(content, str):
        return content or "", ()
    texts: list[str] = []
    parts: list[str | ImagePart] = []
    for number, part in enumerate(content):
        if part.type == "image_url":
            field = f"messages[{index}].content[{number}].image_url"
            if part.image_url is None:
                raise InvalidInput(f"{field} is required.", field=field)
            url, detail = part.image_url.url, part.image_url.detail
            parts.append(image_part(url, detail, field=field))
        elif assistant and part.type == "refusal" and part.refusal is not None:
            texts.append(part.refusal)
            parts.append(part.refusal)
        elif part.type == "text" and part.text is None:
            field = f"messages[{index}].content[{number}].text"
            raise InvalidInput(f"{field} is required.", field=field)
        elif part.type != "text" or part.text is None:
            raise InvalidInput(
                f"Content of type {part.type!r} is not supported; send text or image_url.",
                field=f"messages[{index}].content",
            )
        else:
            texts.append(part.text)
            parts.append(part.text)
    has_images = len(parts) > len(texts)
    return "".join(texts), tuple(parts) if has_images else ()


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
    name = max_tokens_as if field == "maxTokens" else snake_field(field)
    details = {**error.details, "field": name}
    return InvalidInput(error.message.replace(field, name), **details)
