"""The development model ``dev/echo``: streams the last user message back, word by word, with no
network, so the whole chat flow can be tried without an API key. Asked for a reasoning effort,
it first "thinks" aloud (``StreamReasoning``, one short sentence word by word), so a client's
reasoning view can be tried too."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from whalli.domain.model.chats import MessageRole, ReasoningEffort, TokenUsage
from whalli.domain.model.errors import InvalidInput
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
)

# A word with the whitespace after it, so that the deltas join back into the exact message.
_WORD = re.compile(r"\s*\S+\s*")


class DevEchoChatModel(ChatModel):
    """Usage counts words (prompt: every message; completion: the words sent back); a
    ``max_tokens`` below the word count cuts the reply with finish reason ``length``. It calls
    no tools and answers in no ``response_format`` but text: the catalog says so
    (``ModelSpec.calls_tools``, ``ModelSpec.structured_outputs``), and a request asking it
    for them is refused before it gets here (a format that does get here is refused too: an
    echo is not the JSON asked for)."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.provider = "dev"
        self._delay = delay

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        if request.response_format is not None:
            raise InvalidInput(
                "dev/echo answers in text only: no response_format.", field="response_format"
            )
        return self._events(request)

    async def _events(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        last_user = next(
            (m.content for m in reversed(request.messages) if m.role == MessageRole.USER), ""
        )
        words = _WORD.findall(last_user)
        limit = request.params.max_tokens
        finish_reason = "stop"
        if limit is not None and len(words) > limit:
            words, finish_reason = words[:limit], "length"
        thoughts: list[str] = []
        effort = request.params.reasoning_effort
        if effort is not None and effort is not ReasoningEffort.NONE:
            thoughts = _WORD.findall(
                f"Thinking ({effort} effort): the user wrote {len(words)} words; I repeat them."
            )
        for thought in thoughts:
            await asyncio.sleep(self._delay)
            yield StreamReasoning(text=thought)
        for word in words:
            # Yield to the event loop between words, as a network stream would.
            await asyncio.sleep(self._delay)
            yield StreamDelta(text=word)
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        yield StreamEnd(
            finish_reason=finish_reason,
            usage=TokenUsage(
                prompt_tokens=prompt_tokens, completion_tokens=len(thoughts) + len(words)
            ),
        )
