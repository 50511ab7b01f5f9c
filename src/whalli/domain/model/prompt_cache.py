"""The identical-prompt cache: its key and the reply it stores.

The key is a SHA-256 over a canonical encoding of exactly what decides the reply:
- the model id (Whalli's catalog name);
- the context sent, as (role, content) pairs in order; attachment text is part of those contents;
- the generation parameters that are set (an explicit ``None`` is the same as a missing one);
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
) -> str:
    """The hex SHA-256 naming the cached reply for this exact prompt (see the module docstring)."""
    document = (
        "whalli-prompt",
        context_version,
        model_id,
        [(str(m.role), m.content) for m in messages],
        _canonical_params(params),
        scope,
    )
    return hashlib.sha256(_canonical.encode(document)).hexdigest()


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
