"""A reply's prompt built again for a fallback model's own window (``PromptSource``)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from whalli.domain.model.catalog import ModelSpec, Plan
from whalli.domain.model.chats import GenerationParams, Message, MessageRole, MessageStatus
from whalli.domain.model.images import ImagePart
from whalli.domain.services.chat.context import ContextLimits, estimate_prompt_tokens
from whalli.domain.services.chat.prompt_source import PromptSource

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = ContextLimits(reserve_for_reply=500)


def spec(window: int, cap: int | None = None) -> ModelSpec:
    return ModelSpec(
        id=f"openai/w{window}", provider="openai", upstream="w", min_plan=Plan.FREE,
        input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, context_window=window,
        max_output_tokens=cap,
    )  # fmt: skip


def history(turns: int) -> list[Message]:
    """``turns`` messages of about 100 tokens each, user and assistant in turn."""
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [
        Message(
            id=UUID(int=i + 1),
            chat_id=UUID(int=0),
            role=roles[i % 2],
            content=f"turn {i:02d} " + "x" * 390,
            status=MessageStatus.COMPLETE,
            created_at=T0,
            updated_at=T0,
        )
        for i in range(turns)
    ]


def source(
    turns: int = 30, message: str = "the newest", system: str | None = "Be kind."
) -> PromptSource:
    return PromptSource(LIMITS, history(turns), message, [], system, {})


def test_a_fallback_gets_the_prompt_trimmed_to_its_own_smaller_window() -> None:
    built = source()
    asked = built.build(spec(8000), reply_tokens=None, effort=None)
    fitted = built.for_fallback(spec(2000), GenerationParams())

    assert fitted is not None
    prompt, params = fitted
    assert estimate_prompt_tokens(asked) > 2000  # the prompt of the model asked for: all of it
    assert estimate_prompt_tokens(prompt) <= 2000 - 500
    assert prompt[0].content == "Be kind."  # the system prompt and the new message stay
    assert prompt[-1].content == "the newest"
    assert [m.content for m in prompt[1:]] == [m.content for m in asked][-len(prompt) + 1 :]
    assert params == GenerationParams()
    # a larger window gets more of the history, as it would have asked first
    roomy = built.for_fallback(spec(100_000), GenerationParams())
    assert roomy is not None
    assert len(roomy[0]) == 32


def test_a_fallback_is_never_asked_for_more_tokens_than_its_window_leaves() -> None:
    built = source(turns=4)
    fitted = built.for_fallback(spec(2000), GenerationParams(max_tokens=3000, temperature=0.5))

    assert fitted is not None
    prompt, params = fitted
    # the new message (and the system prompt) stay; maxTokens is cut to what they leave
    assert [m.content for m in prompt] == ["Be kind.", "the newest"]
    assert params == GenerationParams(
        max_tokens=2000 - estimate_prompt_tokens(prompt), temperature=0.5
    )
    # a cap the window holds stays, and the history gets what it leaves
    kept = built.for_fallback(spec(2000), GenerationParams(max_tokens=1200))
    assert kept is not None
    assert kept[1].max_tokens == 1200
    assert estimate_prompt_tokens(kept[0]) + 1200 <= 2000
    assert len(kept[0]) > 2
    # and its own output cap still applies first
    capped = built.for_fallback(spec(8000, cap=700), GenerationParams(max_tokens=3000))
    assert capped is not None
    assert capped[1].max_tokens == 700


@pytest.mark.parametrize("max_tokens", [None, 100, 5000])
def test_a_fallback_whose_window_cannot_hold_the_new_message_is_none(
    max_tokens: int | None,
) -> None:
    built = source(turns=4, message="y" * 8000)  # 2,000 tokens and more

    assert built.for_fallback(spec(2000), GenerationParams(max_tokens=max_tokens)) is None
    assert built.for_fallback(spec(8000), GenerationParams(max_tokens=max_tokens)) is not None


def test_a_fallback_keeps_the_new_messages_images() -> None:
    image = ImagePart(url="data:image/png;base64,iVBORw0K")
    built = PromptSource(LIMITS, history(30), "look", [("cat.png", image)], None, {})

    fitted = built.for_fallback(spec(4000), GenerationParams())

    assert fitted is not None
    assert fitted[0][-1].parts == ("Attached image: cat.png", image, "look")
