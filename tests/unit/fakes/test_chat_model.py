from __future__ import annotations

import pytest

from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.domain.model.chats import MessageRole, TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import (
    CompletionRequest,
    PromptMessage,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)

REQUEST = CompletionRequest(
    model="scripted-1", messages=(PromptMessage(role=MessageRole.USER, content="Hi"),)
)


async def collect(model: ScriptedChatModel) -> list[StreamEvent]:
    return [event async for event in model.stream(REQUEST)]


async def test_it_yields_the_scripted_deltas_then_exactly_one_end() -> None:
    usage = TokenUsage(prompt_tokens=3, completion_tokens=2)
    model = ScriptedChatModel(["Hel", "lo"], finish_reason="stop", usage=usage)

    events = await collect(model)

    assert events == [
        StreamDelta(text="Hel"),
        StreamDelta(text="lo"),
        StreamEnd(finish_reason="stop", usage=usage),
    ]
    assert model.requests == [REQUEST]
    assert model.open_streams == 0


async def test_a_scripted_error_is_raised_after_the_deltas_instead_of_the_end() -> None:
    model = ScriptedChatModel(["partial"], error=ProviderError("upstream failed"))
    stream = model.stream(REQUEST)

    assert await anext(stream) == StreamDelta(text="partial")
    with pytest.raises(ProviderError, match="upstream failed"):
        await anext(stream)
    assert model.open_streams == 0


async def test_closing_the_stream_early_closes_it() -> None:
    model = ScriptedChatModel(["a", "b", "c"])
    stream = model.stream(REQUEST)

    assert await anext(stream) == StreamDelta(text="a")
    assert model.open_streams == 1
    await stream.aclose()  # type: ignore[attr-defined]

    assert model.open_streams == 0
