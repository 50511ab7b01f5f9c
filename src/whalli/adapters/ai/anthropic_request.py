"""Anthropic Messages API requests: a ``CompletionRequest`` as the body of ``POST /v1/messages``.

The conversation (the system prompt apart, turns alternating, tool calls and results as
``tool_use`` and ``tool_result`` blocks, a user's images as ``image`` blocks in order with its
text), the sampling parameters the API has (``temperature``, else ``top_p``: Claude Sonnet and
Haiku 4.5, Opus 4.1 and later refuse both at once, and Anthropic advises changing one only),
the tools.

A ``response_format`` (JSON mode, structured outputs) has no field of its own in the Messages
API. As LiteLLM does, which works with every Claude model: the request offers one tool,
``FORMAT_TOOL``, whose ``input_schema`` is the format's schema (any object for ``json_object``),
and forces it (``tool_choice: {"type": "tool"}``): the input Claude writes for it is the reply,
which the stream reader (``anthropic``) passes on as text ending with finish reason ``stop``.

With the caller's own tools too, the format's tool is offered beside them (``_formatted``):
- ``tool_choice`` ``auto`` (or none): Claude must call a tool (``any``), one of the caller's or
  the format's, so it either calls a tool or answers in the format, never in free text (LiteLLM
  does not force anything here, which lets the JSON asked for go silently missing);
- ``none`` (an agent's final, structured answer after its tool turns, which must still send the
  tools for Anthropic to read those turns): the format's tool is forced;
- ``required`` or a named function: a call of the caller's is what this turn asks for, so only
  their tools are offered, as without a format;
- a caller's tool named ``FORMAT_TOOL`` would be mistaken for the reply: ``InvalidInput``.
The format's tool is called once (``disable_parallel_tool_use`` when it is forced; the stream
reader passes on only the first such call in any case).

A model that enforces schemas (the catalog's ``strict_outputs``: Claude's structured outputs,
4.5 and later) is asked for them as OpenAI's are:
- a ``json_schema`` format with ``strict: true`` and a schema goes as the API's own
  ``output_config.format`` (``native_format``): Claude's text is then the JSON, which the stream
  reader passes on as any text; the caller's tools, if any, are offered as without a format (a
  turn may still call one), and extended thinking is allowed (nothing is forced);
- a function with ``strict: true`` is a tool with ``strict: true``;
- either schema is sent in the subset of JSON Schema Claude enforces (``anthropic_schemas``:
  what it cannot enforce, bounds above all, is said in the schema's description instead).
Other formats (``json_object``, a schema not asked strict, whose subset of JSON Schema the API
may not take) and other models keep the forced tool, and ``strict`` is not sent.

An image the API would refuse for its size is refused before calling it (``anthropic_images``),
and so is a conversation ending with an assistant turn (a prefill of the reply) for a model that
takes none (the catalog's ``prefill = false``: Claude Opus and Sonnet 4.6).
A reasoning effort asks for extended thinking (``anthropic_thinking``).

Long conversations are cached by the API between their turns (``cache_breakpoints``, on by
default: ``WHALLI_ANTHROPIC_PROMPT_CACHE``, for ``WHALLI_ANTHROPIC_PROMPT_CACHE_TTL``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from whalli.adapters.ai._stops import split_stops
from whalli.adapters.ai.anthropic_images import check_image_sizes
from whalli.adapters.ai.anthropic_schemas import strict_schema
from whalli.adapters.ai.anthropic_thinking import prefilled, with_thinking
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.images import ImagePart
from whalli.domain.model.response_format import ResponseFormat
from whalli.domain.model.tools import ToolCall, ToolChoiceMode, Tools
from whalli.ports.chat_model import CompletionRequest

FORMAT_TOOL = "json_response"
# a prompt cache breakpoint (kept 5 minutes, renewed on use), and one kept an hour
_MARK = {"cache_control": {"type": "ephemeral"}}
_HOUR_MARK = {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
CACHE_TTLS = ("5m", "1h")
# LiteLLM's schema for JSON mode (an empty ``properties``: the API refuses a null one)
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True, "properties": {}}
_FORMAT_DESCRIPTION = "Give your answer with this tool: its input is the reply, as JSON."


def _at_most(tokens: int, cap: int | None) -> int:
    return tokens if cap is None else min(tokens, cap)


def messages_body(
    request: CompletionRequest,
    *,
    default_max_tokens: int,
    prompt_cache: bool = False,
    cache_ttl: str = "5m",
) -> dict[str, Any]:
    """The request body (streamed), with ``prompt_cache`` the prompt cache's breakpoints
    (``cache_breakpoints``, kept ``cache_ttl``). Raises ``InvalidInput`` for what the API
    would refuse and clients send (tool turns without tools, arguments that are not an
    object, see ``_format_tool``), and ``check_image_sizes``'s error for an image too large."""
    body = _body(request, default_max_tokens)
    return cache_breakpoints(body, cache_ttl) if prompt_cache else body


def cache_breakpoints(body: dict[str, Any], ttl: str = "5m") -> dict[str, Any]:
    """``body`` asking Anthropic to cache its prompt (``cache_control`` breakpoints, kept ``ttl``:
    its 5-minute cache, renewed on each read, or its 1-hour one, whose writes cost twice the
    input price; all the same, as the API wants longer ones first): on the system prompt (with
    the tools before it: the same instructions start many chats), on the last block of the last
    turn, and on the last block of the turn before the model's last one. The next request of the
    conversation repeats this one's prompt and adds a reply and a turn to it; the API looks back
    from each breakpoint (about 20 blocks) for the longest prefix cached, and the third
    breakpoint sits where this request's last one was, however many blocks a step added (a tool
    loop's parallel calls and results), so all of this one's prompt is read from the cache
    (billed a tenth of the input price; writing it, a quarter more) and only the new turns
    afresh. Three of the API's four breakpoints; a prompt too short to cache (1,024 to 4,096
    tokens by model) is read as without them, at no extra cost."""
    if ttl not in CACHE_TTLS:
        raise ValueError(f"a prompt cache is kept 5m or 1h, not {ttl!r}")
    mark = _HOUR_MARK if ttl == "1h" else _MARK
    cached = dict(body)
    system = body.get("system")
    if isinstance(system, str) and system.strip():  # (a blank text block is refused)
        cached["system"] = [{"type": "text", "text": system, **mark}]
    turns = list(body.get("messages") or [])
    if not turns:
        return cached
    marked = [len(turns) - 1]
    replies = [n for n, turn in enumerate(turns[:-1]) if turn["role"] == "assistant"]
    if replies and replies[-1] > 0:  # the end of the previous request's prompt
        marked.append(replies[-1] - 1)
    for n in marked:
        blocks = _blocks(turns[n]["content"])
        turns[n] = {**turns[n], "content": [*blocks[:-1], {**blocks[-1], **mark}]}
    cached["messages"] = turns
    return cached


def _body(request: CompletionRequest, default_max_tokens: int) -> dict[str, Any]:
    check_image_sizes(request.messages)
    if not request.prefill and prefilled(request.messages):
        raise InvalidInput(
            f"{request.model} does not continue a conversation that ends with an assistant "
            "message (a prefill): end messages with the user's turn.",
            field="messages",
        )
    if request.tools is None and any(
        m.tool_calls or m.role is MessageRole.TOOL for m in request.messages
    ):  # the API refuses tool_use and tool_result blocks in a request without tools
        raise InvalidInput(
            "Anthropic models read tool calls and results only in a request that offers "
            "the tools: send them again in tools.",
            field="tools",
        )
    system = "\n\n".join(m.content for m in request.messages if m.role == MessageRole.SYSTEM)
    params = request.params
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": _at_most(
            params.max_tokens or request.default_max_tokens or default_max_tokens,
            request.max_output_tokens,
        ),
        "messages": _turns(request.messages),
        "stream": True,
    }
    strict = request.strict_outputs
    if native_format(request):
        assert request.response_format is not None
        schema = strict_schema(_object_schema(request.response_format))
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        if request.tools is not None:
            body.update(_tools(request.tools, strict=strict))
    elif request.response_format is not None:
        body.update(_formatted(request.response_format, request.tools, strict=strict))
    elif request.tools is not None:
        body.update(_tools(request.tools, strict=strict))
    if system:
        body["system"] = system
    if params.temperature is not None:
        body["temperature"] = min(params.temperature, 1.0)  # Anthropic's range is 0..1
    elif params.top_p is not None:  # (not both: the newer models refuse the pair)
        body["top_p"] = params.top_p
    sent, _ = split_stops(params.stop)
    if sent:  # whitespace-only ones are refused by the API: they are applied while streaming
        body["stop_sequences"] = sent
    # seed, presence_penalty and frequency_penalty: the Messages API has no such thing
    if params.reasoning_effort is not None:
        return with_thinking(
            body, params.reasoning_effort, request.messages, request.max_output_tokens,
            adaptive=request.adaptive_thinking,
        )  # fmt: skip
    return body


def native_format(request: CompletionRequest) -> bool:
    """Whether the request's format goes as the API's own ``output_config.format``: a JSON
    Schema asked ``strict``, of a model that enforces schemas (see the module docstring)."""
    asked = request.response_format
    return (
        request.strict_outputs
        and asked is not None
        and asked.json_schema is not None
        and asked.json_schema.strict is True
        and asked.schema is not None
    )


def _formatted(
    response_format: ResponseFormat, tools: Tools | None, *, strict: bool
) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` of a request in a format (see the module docstring)."""
    forced = {"type": "tool", "name": FORMAT_TOOL, "disable_parallel_tool_use": True}
    if tools is None:
        return {"tools": [_format_tool(response_format)], "tool_choice": forced}
    mode = tools.choice.mode if tools.choice is not None else ToolChoiceMode.AUTO
    if mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.FUNCTION):
        # a call of theirs is asked for: the format is for a later turn
        return _tools(tools, strict=strict)
    if any(spec.name == FORMAT_TOOL for spec in tools.specs):
        raise InvalidInput(
            f"With a response_format, Anthropic models cannot be offered tools named "
            f"{FORMAT_TOOL!r}: Whalli gives them one of that name for the reply.",
            field="tools",
        )
    offered = _tools(tools, strict=strict)
    offered["tools"].append(_format_tool(response_format))
    if mode is ToolChoiceMode.NONE:
        offered["tool_choice"] = forced
    else:  # one of their tools, or the answer in the format: never free text
        choice: dict[str, Any] = {"type": "any"}
        if tools.parallel is False:
            choice["disable_parallel_tool_use"] = True
        offered["tool_choice"] = choice
    return offered


def _format_tool(response_format: ResponseFormat) -> dict[str, Any]:
    """The tool whose input is the reply (its input schema: ``_object_schema``)."""
    json_schema = response_format.json_schema
    description = json_schema.description if json_schema is not None else None
    return {
        "name": FORMAT_TOOL,
        "description": description or _FORMAT_DESCRIPTION,
        "input_schema": _object_schema(response_format),
    }


def _object_schema(response_format: ResponseFormat) -> dict[str, Any]:
    """The format's schema, which must describe an object (a tool's input, and the API's
    own format, are objects): a schema of another type is refused (``InvalidInput``), one
    without a type is given ``object``, none at all is any object."""
    schema = response_format.schema
    if schema is None:
        return _ANY_OBJECT
    if "type" not in schema:
        return {"type": "object", **schema}
    if schema["type"] == "object":
        return schema
    field = "response_format.json_schema.schema"
    raise InvalidInput(
        f"{field} must describe an object (type 'object') for Anthropic models.", field=field
    )


def _turns(messages: tuple[PromptMessage, ...]) -> list[dict[str, Any]]:
    """The conversation as the API takes it. It takes the system prompt apart, refuses a turn
    without content (an OpenAI client's assistant turn with null content) and wants user and
    assistant turns to alternate: empty turns are left out and consecutive turns of one role
    are joined; an assistant's tool calls are ``tool_use`` blocks, and tool results
    ``tool_result`` blocks of the user turn that follows them."""
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role == MessageRole.SYSTEM:
            continue
        content: str | list[dict[str, Any]]
        role = "user" if message.role is MessageRole.TOOL else str(message.role)
        if message.role is MessageRole.TOOL:
            content = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                }
            ]
        elif message.tool_calls:
            content = [{"type": "text", "text": message.content}] if message.content.strip() else []
            content += [_tool_use(index, n, call) for n, call in enumerate(message.tool_calls)]
        elif message.parts:  # images, in order with the text (empty text blocks are refused)
            content = [_part(p) for p in message.parts if not isinstance(p, str) or p.strip()]
        elif message.content.strip():
            content = message.content
        else:
            continue
        if not turns or turns[-1]["role"] != role:
            turns.append({"role": role, "content": content})
            continue
        previous = turns[-1]["content"]
        if isinstance(previous, str) and isinstance(content, str):
            turns[-1]["content"] = previous + "\n\n" + content
        else:
            turns[-1]["content"] = _blocks(previous) + _blocks(content)
    return turns


def _part(part: str | ImagePart) -> dict[str, Any]:
    """A text block, or an image block: a data URL's image as base64 data, a URL as a URL
    source, which Anthropic fetches (Whalli never fetches it: no request of ours goes to it).
    ``detail`` has no equivalent in the Messages API: it is not sent."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if part.is_data:
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    else:
        source = {"type": "url", "url": part.url}
    return {"type": "image", "source": source}


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _tool_use(index: int, number: int, call: ToolCall) -> dict[str, Any]:
    try:
        arguments = msgspec.json.decode(call.arguments) if call.arguments.strip() else {}
    except msgspec.DecodeError:
        arguments = None
    if not isinstance(arguments, dict):  # Anthropic's input is a JSON object
        field = f"messages[{index}].tool_calls[{number}].function.arguments"
        raise InvalidInput(f"{field} must be a JSON object (for Anthropic).", field=field)
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _tools(tools: Tools, *, strict: bool) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` as the Messages API takes them; ``strict``: the model
    enforces the schema of a function asked ``strict``."""
    functions = []
    for spec in tools.specs:
        function: dict[str, Any] = {"name": spec.name}
        if spec.description is not None:
            function["description"] = spec.description
        # input_schema is required: a function without parameters takes an empty object
        function["input_schema"] = spec.parameters or {"type": "object", "properties": {}}
        if strict and spec.strict is True:
            function["input_schema"] = strict_schema(function["input_schema"])
            function["strict"] = True
        functions.append(function)
    body: dict[str, Any] = {"tools": functions}
    choice: dict[str, Any] | None = None
    mode = tools.choice.mode if tools.choice is not None else None
    if mode is ToolChoiceMode.FUNCTION:
        assert tools.choice is not None
        choice = {"type": "tool", "name": tools.choice.name}
    elif mode is not None:
        choice = {"type": _CHOICES[mode]}
    if tools.parallel is False and mode is not ToolChoiceMode.NONE:
        choice = (choice or {"type": "auto"}) | {"disable_parallel_tool_use": True}
    if choice is not None:
        body["tool_choice"] = choice
    return body


_CHOICES = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.REQUIRED: "any",
    ToolChoiceMode.NONE: "none",
}
