"""Reasoning models' streams, as their providers send them: OpenAI-compatible servers'
``reasoning_content`` (DeepSeek, xAI, vLLM) or ``reasoning`` (OpenRouter, Ollama) deltas before
the answer, and Anthropic's thinking blocks (``thinking_delta`` and ``signature_delta``, or a
``redacted_thinking`` block) before its text block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.support.fake_providers import (
    COMPLETION_TOKENS,
    DELTAS,
    PROMPT_TOKENS,
    anthropic_stream,
    openai_chunk,
    openai_stream,
    sse,
)

THOUGHTS = ("The user greets me.", " I should greet back.")


def openai_reasoning_stream(
    thoughts: Sequence[str] = THOUGHTS,
    deltas: Sequence[str] = DELTAS,
    *,
    field: str = "reasoning_content",
) -> list[bytes]:
    """The role chunk, the reasoning pieces (in ``field``), then ``openai_stream``'s answer."""
    plain = openai_stream(deltas)
    role, rest = plain[0], plain[1:]
    thinking = [sse(openai_chunk({field: text, "content": None})) for text in thoughts]
    return [role, *thinking, *rest]


def _block(index: int, block: dict[str, Any]) -> bytes:
    return sse(
        {"type": "content_block_start", "index": index, "content_block": block},
        "content_block_start",
    )


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return sse(
        {"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"
    )


def _stop(index: int) -> bytes:
    return sse({"type": "content_block_stop", "index": index}, "content_block_stop")


def anthropic_thinking_stream(
    thoughts: Sequence[str] = THOUGHTS,
    deltas: Sequence[str] = DELTAS,
    *,
    redacted: bool = False,
) -> list[bytes]:
    """A thinking block (its pieces, then its signature) at index 0 (a redacted one after it
    with ``redacted``), then the text block with ``deltas``, as Anthropic streams extended
    thinking."""
    plain = anthropic_stream(deltas, input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS)
    start, text_start, rest = plain[0], plain[1], plain[2:]
    thinking = [_block(0, {"type": "thinking", "thinking": "", "signature": ""})]
    thinking += [_delta(0, {"type": "thinking_delta", "thinking": text}) for text in thoughts]
    thinking += [_delta(0, {"type": "signature_delta", "signature": "EqQBCkYIARgCKkA"}), _stop(0)]
    shift = 1
    if redacted:
        thinking += [_block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"}), _stop(1)]
        shift = 2
    # the text block and its deltas move to the index after the thinking blocks
    moved = [
        piece.replace(b'"index": 0', f'"index": {shift}'.encode()) for piece in (text_start, *rest)
    ]
    return [start, *thinking, *moved]
