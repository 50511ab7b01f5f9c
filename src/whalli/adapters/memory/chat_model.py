"""A chat model that streams a script instead of calling a provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from whalli.domain.model.chats import TokenUsage
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
    ToolCallDelta,
)


class ScriptedChatModel(ChatModel):
    """Yields ``reasoning`` pieces, then ``deltas``, then ``tool_calls`` (pieces of calls),
    then one ``StreamEnd``; or, with ``error`` set, raises it after them.

    Records every request in ``requests``; ``open_streams`` counts streams started and not yet
    finished or closed, so tests can check that callers close what they open.
    """

    def __init__(
        self,
        deltas: Sequence[str] = ("Hello", ", world"),
        *,
        provider: str = "scripted",
        finish_reason: str = "stop",
        usage: TokenUsage | None = None,
        error: Exception | None = None,
        tool_calls: Sequence[ToolCallDelta] = (),
        reasoning: Sequence[str] = (),
    ) -> None:
        self.provider = provider
        self.deltas = list(deltas)
        self.finish_reason = finish_reason
        self.usage = usage or TokenUsage(
            prompt_tokens=0, completion_tokens=sum(len(d.split()) for d in self.deltas)
        )
        self.error = error
        self.tool_calls = list(tool_calls)
        self.reasoning = list(reasoning)
        self.requests: list[CompletionRequest] = []
        self.open_streams = 0

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        self.open_streams += 1
        try:
            for thought in self.reasoning:
                yield StreamReasoning(text=thought)
            for text in self.deltas:
                yield StreamDelta(text=text)
            for piece in self.tool_calls:
                yield piece
            if self.error is not None:
                raise self.error
            yield StreamEnd(finish_reason=self.finish_reason, usage=self.usage)
        finally:
            self.open_streams -= 1
