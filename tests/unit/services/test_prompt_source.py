"""A reply's prompt built again for a fallback model's own window (``PromptSource``)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec
import pytest

from tests.unit.services.test_prompt_files import CountingBlobs, model, png_of, stored
from whalli.domain.model.catalog import ModelSpec, Plan
from whalli.domain.model.chats import GenerationParams, Message, MessageRole, MessageStatus
from whalli.domain.model.images import ImagePart
from whalli.domain.services.chat.context import ContextLimits, estimate_prompt_tokens
from whalli.domain.services.chat.prompt_files import attached_files
from whalli.domain.services.chat.prompt_source import PromptSource
from whalli.domain.services.chat.requests import completion_request

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


def claude(window: int) -> ModelSpec:
    return msgspec.structs.replace(spec(window), id=f"anthropic/w{window}", provider="anthropic")


@pytest.mark.parametrize("window", [4000, 8000, 100_000])
def test_a_claude_fallback_asked_no_max_tokens_has_its_default_cap_kept_free(window: int) -> None:
    """Claude is sent ``default_max_tokens`` without maxTokens (its API requires a cap): the
    prompt built for it as a fallback leaves that room, whatever its window."""
    fallback = claude(window)
    fitted = source(turns=window // 50).for_fallback(fallback, GenerationParams())

    assert fitted is not None
    prompt, params = fitted
    assert params.max_tokens is None
    sent = completion_request(fallback, prompt, params).default_max_tokens
    assert sent == fallback.default_max_tokens == min(8192, window // 4)
    assert estimate_prompt_tokens(prompt) + sent <= window


async def test_a_fallback_gets_each_image_as_its_own_provider_takes_it_read_once() -> None:
    """The images read for the model asked (an OpenAI one, which takes a GIF and 9000 pixels)
    go to a fallback as its provider takes them: xAI gets the GIF as its text, Claude the
    9000-pixel PNG; nothing is read again. A fallback that reads no image is given them as
    they are (and skipped by the reply)."""
    blobs = CountingBlobs()
    gif = await stored(blobs, "anim.gif", "image/gif", b"gif")
    huge = await stored(blobs, "huge.png", "image/png", png_of(9000, 9000))
    asked = model("openai")
    files, earlier, attached = await attached_files(asked, blobs, [gif, huge], None, {})
    built = PromptSource(LIMITS, history(4), "look", files, None, earlier, attached)
    reads = list(blobs.reads)

    as_asked = built.build(asked, reply_tokens=None, effort=None)
    to_grok = built.for_fallback(model("xai"), GenerationParams())
    to_claude = built.for_fallback(model("anthropic"), GenerationParams())
    to_blind = built.for_fallback(model("openai", vision=False), GenerationParams())

    assert blobs.reads == reads
    assert [type(p) for p in as_asked[-1].parts] == [str, ImagePart, str, ImagePart, str]
    assert to_grok is not None
    assert to_claude is not None
    assert to_blind is not None
    _, gif_image, _, huge_image, _ = as_asked[-1].parts
    assert to_grok[0][-1].parts == (
        "Attached file: anim.gif\nOCR of anim.gif\n\nAttached image: huge.png", huge_image, "look",
    )  # fmt: skip
    assert to_claude[0][-1].parts == (
        "Attached image: anim.gif", gif_image, "Attached file: huge.png\nOCR of huge.png\n\nlook",
    )  # fmt: skip
    assert to_blind[0] == as_asked
