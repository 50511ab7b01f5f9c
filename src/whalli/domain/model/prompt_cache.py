"""The identical-prompt cache: its key and the reply it stores.

The key is a SHA-256 over a canonical encoding of exactly what decides the reply:
- the model id (Whalli's catalog name);
- the context sent, as (role, content) pairs in order; attachment text is part of those contents;
  a turn with tool calls or answering one adds them: (role, content, calls, tool_call_id);
  a user turn with images (``/v1``) is (role, content, "parts", parts): its text and images in
  order, each image as the SHA-256 of its URL (a data URL holds the image itself) and its
  ``detail`` (text-only turns hash exactly as before images existed);
- the generation parameters that are set (an explicit ``None`` is the same as a missing one);
- the tools offered, the tool choice and ``parallel_tool_calls``, when there are tools (a
  request without tools hashes exactly as before tools existed, so its entries stay valid);
- the ``response_format`` (JSON mode, structured outputs), when there is one (``text`` is
  none: a request without one hashes exactly as before formats existed);
- ``context_version``, bumped whenever the way a context is built changes, so old entries miss;
- the ``scope`` sharing the entry: by default a project (chat replies) or a user (``/v1``), so
  a hit never tells anyone that someone they share nothing with asked the same thing (a cached
  answer comes back flagged and faster); ``None`` when the deployment shares one cache.

Nothing else enters the hash: message ids, timestamps, chat and session ids are not part of
the prompt. The encoding is a JSON array (strings escaped, so ``["ab", "c"]`` and
``["a", "bc"]`` differ) with sorted object keys; contents are hashed as given (no Unicode
normalisation: any character counts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.chats import GenerationParams, PromptMessage, TokenUsage
from whalli.domain.model.images import ImagePart
from whalli.domain.model.response_format import ResponseFormat
from whalli.domain.model.tools import ToolCall, Tools

CONTEXT_VERSION = "v1"

_canonical = msgspec.json.Encoder(order="sorted")


def project_scope(project_id: UUID) -> str:
    return f"project:{project_id}"


def user_scope(user_id: UUID) -> str:
    return f"user:{user_id}"


def cache_key(
    *,
    model_id: str,
    messages: Sequence[PromptMessage],
    params: GenerationParams,
    scope: str | None = None,
    context_version: str = CONTEXT_VERSION,
    tools: Tools | None = None,
    response_format: ResponseFormat | None = None,
) -> str:
    """The hex SHA-256 naming the cached reply for this exact prompt (see the module docstring)."""
    document: tuple[object, ...] = (
        "whalli-prompt",
        context_version,
        model_id,
        [_canonical_message(m) for m in messages],
        _canonical_params(params),
        scope,
    )
    if tools is not None:  # a longer array: never the key of a request without tools
        document = (*document, _canonical_tools(tools))
    if response_format is not None:  # an object the tools' (keys specs, choice...) never is
        # as sent (``None`` fields left out), the schema hashed with its keys sorted
        document = (*document, {"response_format": response_format.as_sent()})
    return hashlib.sha256(_canonical.encode(document)).hexdigest()


def _canonical_message(message: PromptMessage) -> tuple[object, ...]:
    if message.name is not None:  # the speaker's name, after the rest (none: as before names)
        return (*_canonical_turn(message), "name", message.name)
    return _canonical_turn(message)


def _canonical_turn(message: PromptMessage) -> tuple[object, ...]:
    if message.parts:  # images: a longer turn than any without, its parts in order
        parts = [_canonical_part(p) for p in message.parts]
        return (str(message.role), message.content, "parts", parts)
    if not message.tool_calls and message.tool_call_id is None:
        return (str(message.role), message.content)  # as before tool calls existed
    calls = [(c.id, c.name, c.arguments) for c in message.tool_calls]
    return (str(message.role), message.content, calls, message.tool_call_id)


def _canonical_part(part: str | ImagePart) -> object:
    if isinstance(part, str):
        return part
    # The URL (a data URL holds the image) by its SHA-256: the key's document stays small
    digest = hashlib.sha256(part.url.encode("utf-8", "surrogatepass")).hexdigest()
    return {"image": digest, "detail": None if part.detail is None else str(part.detail)}


def _canonical_tools(tools: Tools) -> dict[str, object]:
    # Struct fields as objects with sorted keys (``None`` ones left out, as for the params);
    # JSON Schemas are hashed as given (sorted keys: their order does not count).
    return {
        "specs": [
            {k: v for k, v in msgspec.structs.asdict(spec).items() if v is not None}
            for spec in tools.specs
        ],
        "choice": None if tools.choice is None else (str(tools.choice.mode), tools.choice.name),
        "parallel": tools.parallel,
    }


_FLOATS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})


def _canonical_params(params: GenerationParams) -> dict[str, object]:
    canonical: dict[str, object] = {}
    for name, value in msgspec.structs.asdict(params).items():
        if value is None:
            continue
        if name in _FLOATS:
            # 1 and 1.0 (and -0.0 and 0.0) are the same temperature; JSON would spell them apart.
            value = float(value) + 0.0
        canonical[name] = value
    return canonical


class CachedReply(Value, frozen=True, kw_only=True):
    """A complete reply as the provider streamed it.

    ``deltas`` keeps the provider's token boundaries so that a cache hit streams token by token,
    like the original reply, rather than as one blob.
    """

    deltas: tuple[str, ...]
    finish_reason: str
    usage: TokenUsage = TokenUsage()
    # The tool calls that followed the text, whole (entries written before tools have none).
    tool_calls: tuple[ToolCall, ...] = ()
    # A reasoning model's thinking, in its pieces, streamed again before the text on a hit
    # (entries written before reasoning have none).
    reasoning: tuple[str, ...] = ()
    # The model's refusal (OpenAI's ``refusal``, ``/v1``), in its pieces, after the text
    # (entries written before refusals have none).
    refusal: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.deltas)


_reply_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(CachedReply)


def encode_cached_reply(reply: CachedReply) -> bytes:
    return _reply_encoder.encode(reply)


def decode_cached_reply(data: bytes) -> CachedReply:
    """Raises ``ValueError`` for bytes that are not a cached reply.

    Callers treat that as a miss (an entry written by an older, incompatible release).
    """
    try:
        return _reply_decoder.decode(data)
    except msgspec.DecodeError as e:
        raise ValueError(f"not a cached reply: {e}") from e
