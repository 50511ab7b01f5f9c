from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from uuid import UUID

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.catalog import CLASSIC_EFFORTS, ModelSpec, Plan
from whalli.domain.model.chats import (
    Message,
    MessageRole,
    MessageStatus,
    PromptMessage,
    ReasoningEffort,
)
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.images import IMAGE_TOKENS, ImagePart
from whalli.domain.services.chat.context import (
    MESSAGE_OVERHEAD_TOKENS,
    ContextLimits,
    attachment_block,
    build_context,
    estimate_message_tokens,
    estimate_prompt_tokens,
    estimate_tokens,
)

CHAT = UUID(int=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
USER, ASSISTANT, SYSTEM = MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM


def message(i: int, role: MessageRole, content: str, status: MessageStatus) -> Message:
    when = T0 + timedelta(seconds=i)
    return Message(
        id=UUID(int=1000 + i),
        chat_id=CHAT,
        role=role,
        content=content,
        status=status,
        created_at=when,
        updated_at=when,
    )


def conversation(*turns: tuple[MessageRole, str]) -> list[Message]:
    return [message(i, r, c, MessageStatus.COMPLETE) for i, (r, c) in enumerate(turns)]


contents = st.text(max_size=300) | st.sampled_from(["", "  ", "hi", "é" * 50, "🐳" * 30])
turns = st.tuples(
    st.sampled_from(list(MessageRole)),
    contents,
    st.sampled_from(list(MessageStatus)) | st.just(MessageStatus.COMPLETE),
)
histories = st.lists(turns, max_size=30).map(
    lambda ts: [message(i, role, text, status) for i, (role, text, status) in enumerate(ts)]
)
filenames = st.text(max_size=30) | st.sampled_from(["report.pdf", "a\nb.txt", " \t", "x\r\ny"])
attachment_lists = st.lists(st.tuples(filenames, st.text(max_size=400)), max_size=3)
new_messages = st.text(min_size=1, max_size=300)
windows = st.integers(min_value=1, max_value=3000)
reserves = st.integers(min_value=0, max_value=500)
caps = st.integers(min_value=0, max_value=300)


def eligible(history: list[Message]) -> list[PromptMessage]:
    return [
        PromptMessage(role=m.role, content=m.content)
        for m in history
        if m.status == MessageStatus.COMPLETE and m.role in (USER, ASSISTANT) and m.content.strip()
    ]


def build(
    history: list[Message],
    new: str = "question",
    attachments: list[tuple[str, str]] | None = None,
    window: int = 1000,
    reserve: int = 0,
    cap: int = 1000,
    system: str | None = None,
) -> tuple[PromptMessage, ...]:
    return build_context(
        history=history,
        new_message=new,
        attachments=attachments or [],
        context_window=window,
        reserve_for_reply=reserve,
        attachment_char_cap=cap,
        system=system,
    )


# --- properties ---------------------------------------------------------------------------------
@given(histories, new_messages, attachment_lists, windows, reserves, caps)
def test_the_context_always_fits_or_the_new_message_alone_is_too_big(
    history: list[Message],
    new: str,
    attachments: list[tuple[str, str]],
    window: int,
    reserve: int,
    cap: int,
) -> None:
    try:
        result = build(history, new, attachments, window, reserve, cap)
    except InvalidInput:
        # Refused only when even an empty history does not fit.
        alone = build([], new, attachments, window=10**9, reserve=0, cap=cap)
        assert estimate_prompt_tokens(alone) > window - reserve
        return

    assert estimate_prompt_tokens(result) + reserve <= window


@given(histories, new_messages, attachment_lists, windows, reserves, caps)
def test_the_newest_messages_are_kept_before_older_ones_in_their_order(
    history: list[Message],
    new: str,
    attachments: list[tuple[str, str]],
    window: int,
    reserve: int,
    cap: int,
) -> None:
    try:
        result = build(history, new, attachments, window, reserve, cap)
    except InvalidInput:
        return
    kept, candidates = list(result[:-1]), eligible(history)
    dropped = candidates[: len(candidates) - len(kept)]

    # An unbroken run of the most recent messages, in order, opening with a user message.
    assert candidates[len(dropped) :] == kept
    assert not kept or kept[0].role == USER
    # An older user message is dropped only when it (with every newer one) would overflow.
    dropped_users = [i for i, m in enumerate(dropped) if m.role == USER]
    if dropped_users:
        with_it = [*candidates[dropped_users[-1] :], result[-1]]
        assert estimate_prompt_tokens(with_it) + reserve > window


@given(histories, new_messages, attachment_lists, caps)
def test_the_new_message_comes_last_with_its_attachments(
    history: list[Message], new: str, attachments: list[tuple[str, str]], cap: int
) -> None:
    last = build(history, new, attachments, window=10**9, cap=cap)[-1]

    assert last.role == USER
    assert last.content.endswith(new)
    for name, text in attachments:
        assert attachment_block(name, text, cap) in last.content


@given(filenames, st.text(max_size=500), caps)
def test_attachment_text_is_capped_and_labelled_with_its_file_name(
    name: str, text: str, cap: int
) -> None:
    label, _, body = attachment_block(name, text, cap).partition("\n")

    assert label.startswith(f"Attached file: {' '.join(name.split()) or 'unnamed file'}")
    if not text.strip():
        assert body == "(no text could be extracted from this file)"
    elif len(text) <= cap:
        assert body == text
    else:
        assert body == text[:cap]
        assert label.endswith(f"(first {cap} of {len(text)} characters)")


@given(st.text())
def test_the_token_estimate_is_a_quarter_of_the_utf8_bytes_rounded_up(text: str) -> None:
    assert estimate_tokens(text) == math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)
    assert estimate_message_tokens(PromptMessage(role=USER, content=text)) == (
        estimate_tokens(text) + MESSAGE_OVERHEAD_TOKENS
    )


# --- examples -----------------------------------------------------------------------------------
def test_a_long_chat_is_trimmed_oldest_first() -> None:
    # Each message costs 25 + 4 tokens; the question 2 + 4.
    history = conversation(*[(USER if i % 2 == 0 else ASSISTANT, f"{i}" * 100) for i in range(10)])

    result = build(history, new="question", window=6 + 4 * 29 + 10, reserve=0)

    assert [m.content for m in result] == ["6" * 100, "7" * 100, "8" * 100, "9" * 100, "question"]


def test_an_assistant_reply_left_first_by_trimming_is_dropped() -> None:
    history = conversation((USER, "a" * 100), (ASSISTANT, "b" * 100), (USER, "c" * 100))

    result = build(history, new="question", window=6 + 2 * 29)

    assert [m.content for m in result] == ["c" * 100, "question"]


def test_only_complete_conversation_messages_with_text_are_sent() -> None:
    history = [
        message(0, SYSTEM, "a system note", MessageStatus.COMPLETE),
        message(1, USER, "first", MessageStatus.COMPLETE),
        message(2, ASSISTANT, "cut short", MessageStatus.ABORTED),
        message(3, ASSISTANT, "broke", MessageStatus.FAILED),
        message(4, ASSISTANT, "", MessageStatus.PENDING),
        message(5, ASSISTANT, "   ", MessageStatus.COMPLETE),
        message(6, USER, "second", MessageStatus.COMPLETE),
        message(7, ASSISTANT, "answer", MessageStatus.COMPLETE),
    ]

    result = build(history)

    assert [(m.role, m.content) for m in result] == [
        (USER, "first"),
        (USER, "second"),
        (ASSISTANT, "answer"),
        (USER, "question"),
    ]


def test_attachments_go_before_the_question_in_the_new_message() -> None:
    result = build([], new="Summarise it.", attachments=[("report.pdf", "Sales rose.")])

    assert result == (
        PromptMessage(role=USER, content="Attached file: report.pdf\nSales rose.\n\nSummarise it."),
    )


def test_a_message_too_big_for_the_window_is_refused_naming_the_limit() -> None:
    with pytest.raises(
        InvalidInput,
        match=r"needs about 254 tokens; this model takes at most 90 "
        r"\(a context window of 100 tokens, 10 kept for the reply\)",
    ):
        build([], new="x" * 1000, window=100, reserve=10)


def test_attachments_too_big_for_the_window_are_refused_naming_them() -> None:
    with pytest.raises(InvalidInput, match="This message and its attachments need about"):
        build([], new="hi", attachments=[("big.txt", "x" * 1000)], window=100, cap=10_000)


def test_the_attachment_cap_keeps_a_big_file_within_the_window() -> None:
    result = build([], new="hi", attachments=[("big.txt", "x" * 10_000)], window=100, cap=200)

    assert "x" * 200 in result[-1].content
    assert "x" * 201 not in result[-1].content


@pytest.mark.parametrize(
    ("window", "reserve", "cap"), [(0, 0, 0), (100, -1, 0), (100, 0, -1)], ids=str
)
def test_nonsensical_limits_are_a_programming_error(window: int, reserve: int, cap: int) -> None:
    with pytest.raises(ValueError, match="the window must be positive"):
        build([], window=window, reserve=reserve, cap=cap)


# --- the chat's system prompt --------------------------------------------------------------------
@given(histories, new_messages, st.text(min_size=1, max_size=300), windows, reserves)
def test_a_system_prompt_opens_every_context_and_is_never_trimmed(
    history: list[Message], new: str, system: str, window: int, reserve: int
) -> None:
    alone = build([], new, window=10**9, system=system)
    if estimate_prompt_tokens(alone) > window - reserve:
        with pytest.raises(InvalidInput, match="with the chat's system prompt"):
            build(history, new, window=window, reserve=reserve, system=system)
        return
    result = build(history, new, window=window, reserve=reserve, system=system)

    assert result[0] == PromptMessage(role=SYSTEM, content=system)
    assert [m.role for m in result[1:]].count(SYSTEM) == 0
    assert result[-1].content == new
    assert estimate_prompt_tokens(result) + reserve <= window
    # the history kept is what fits beside the system prompt: the same as without it in a
    # window smaller by the system message's estimate
    system_cost = estimate_prompt_tokens(result[:1])
    assert result[1:] == build(history, new, window=window - system_cost, reserve=reserve)


def test_the_system_prompt_takes_its_share_of_the_window_from_the_oldest_history() -> None:
    history = conversation((USER, "a" * 100), (ASSISTANT, "b" * 100), (USER, "c" * 100))
    window = 6 + 3 * 29

    assert len(build(history, window=window)) == 4
    result = build(history, window=window, system="s" * 100)

    assert [(m.role, m.content) for m in result] == [
        (SYSTEM, "s" * 100), (USER, "c" * 100), (USER, "question"),
    ]  # fmt: skip


# --- files attached to earlier messages ---

REPORT, NOTES = UUID(int=7001), UUID(int=7002)


def with_files(m: Message, *ids: UUID) -> Message:
    m.attachment_ids = ids
    return m


def test_an_earlier_message_keeps_its_files_text_before_its_own() -> None:
    history = [
        with_files(message(0, USER, "summarise this", MessageStatus.COMPLETE), REPORT, NOTES),
        message(1, ASSISTANT, "It says hello.", MessageStatus.COMPLETE),
    ]
    earlier = {REPORT: ("report.pdf", "hello world"), NOTES: ("notes.txt", "more")}
    prompt = build_context(
        history=history, new_message="and section 3?", attachments=[], context_window=1000,
        reserve_for_reply=0, attachment_char_cap=5, earlier_files=earlier,
    )  # fmt: skip
    assert prompt[0] == PromptMessage(
        role=USER,
        content=(
            "Attached file: report.pdf (first 5 of 11 characters)\nhello\n\n"
            "Attached file: notes.txt\nmore\n\nsummarise this"
        ),
    )
    assert prompt[1:] == (
        PromptMessage(role=ASSISTANT, content="It says hello."),
        PromptMessage(role=USER, content="and section 3?"),
    )


def test_a_file_deleted_since_is_left_out_of_its_message() -> None:
    history = [with_files(message(0, USER, "look", MessageStatus.COMPLETE), REPORT, NOTES)]
    prompt = build_context(
        history=history, new_message="q", attachments=[], context_window=1000,
        reserve_for_reply=0, attachment_char_cap=100, earlier_files={NOTES: ("n.txt", "kept")},
    )  # fmt: skip
    assert prompt[0].content == "Attached file: n.txt\nkept\n\nlook"


def test_files_that_no_longer_fit_are_named_as_left_out_and_the_message_stays() -> None:
    history = [
        with_files(message(0, USER, "read it", MessageStatus.COMPLETE), REPORT),
        message(1, ASSISTANT, "done", MessageStatus.COMPLETE),
    ]
    earlier = {REPORT: ("big.pdf", "x" * 4000)}  # ~1,000 tokens: more than the window
    prompt = build_context(
        history=history, new_message="q", attachments=[], context_window=200,
        reserve_for_reply=0, attachment_char_cap=10_000, earlier_files=earlier,
    )  # fmt: skip
    assert [m.content for m in prompt] == [
        "Attached file: big.pdf (left out: the conversation no longer fits with it)\n\nread it",
        "done",
        "q",
    ]
    # with room, the same history keeps the text
    roomy = build_context(
        history=history, new_message="q", attachments=[], context_window=5000,
        reserve_for_reply=0, attachment_char_cap=10_000, earlier_files=earlier,
    )  # fmt: skip
    assert roomy[0].content.startswith("Attached file: big.pdf\nxxxx")


def test_an_assistant_message_never_takes_files() -> None:
    history = [
        message(0, USER, "hi", MessageStatus.COMPLETE),
        with_files(message(1, ASSISTANT, "hello", MessageStatus.COMPLETE), REPORT),
    ]
    prompt = build_context(
        history=history, new_message="q", attachments=[], context_window=1000,
        reserve_for_reply=0, attachment_char_cap=100, earlier_files={REPORT: ("r", "secret")},
    )  # fmt: skip
    assert [m.content for m in prompt] == ["hi", "hello", "q"]


@given(history=histories, window=windows, cap=caps, text=st.text(max_size=400))
def test_with_earlier_files_the_prompt_still_fits_and_keeps_the_newest_run(
    history: list[Message], window: int, cap: int, text: str
) -> None:
    for m in history:
        if m.role is USER:
            m.attachment_ids = (REPORT,)
    try:
        prompt = build_context(
            history=history, new_message="q", attachments=[], context_window=window,
            reserve_for_reply=0, attachment_char_cap=cap, earlier_files={REPORT: ("r.txt", text)},
        )  # fmt: skip
    except InvalidInput:
        return
    assert estimate_prompt_tokens(prompt) <= window
    # each kept earlier message ends with its own text, in order, an unbroken newest run
    kept = prompt[:-1]
    expected = eligible(history)[len(eligible(history)) - len(kept) :]
    assert [m.role for m in kept] == [m.role for m in expected]
    for sent, original in zip(kept, expected, strict=True):
        assert sent.content.endswith(original.content)


# --- attached images (sent as images to models that read them) ---

PNG = ImagePart(url="data:image/png;base64,iVBORw0K")


def test_an_attached_image_goes_as_a_labelled_image_part_between_the_text_parts() -> None:
    prompt = build_context(
        history=[], new_message="What is in it?", attachments=[("a.pdf", "text"), ("p.png", PNG)],
        context_window=10_000, reserve_for_reply=0, attachment_char_cap=100,
    )  # fmt: skip
    (new,) = prompt
    assert new.parts == (
        "Attached file: a.pdf\ntext\n\nAttached image: p.png", PNG, "What is in it?",
    )  # fmt: skip
    assert new.content == "Attached file: a.pdf\ntext\n\nAttached image: p.png\n\nWhat is in it?"
    assert estimate_message_tokens(new) == (
        estimate_tokens(new.content) + MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS
    )


def test_an_earlier_image_that_no_longer_fits_is_named_as_left_out() -> None:
    history = [
        with_files(message(0, USER, "look", MessageStatus.COMPLETE), REPORT),
        message(1, ASSISTANT, "a cat", MessageStatus.COMPLETE),
    ]
    files = {REPORT: ("cat.png", PNG)}
    small = build_context(
        history=history, new_message="q", attachments=[], context_window=IMAGE_TOKENS,
        reserve_for_reply=0, attachment_char_cap=100, earlier_files=files,
    )  # fmt: skip
    assert small[0] == PromptMessage(
        role=USER,
        content="Attached file: cat.png (left out: the conversation no longer fits with it)"
        "\n\nlook",
    )
    roomy = build_context(
        history=history, new_message="q", attachments=[], context_window=2 * IMAGE_TOKENS,
        reserve_for_reply=0, attachment_char_cap=100, earlier_files=files,
    )  # fmt: skip
    assert roomy[0].parts == ("Attached image: cat.png", PNG, "look")


def _window_spec(window: int) -> ModelSpec:
    return ModelSpec(
        id="openai/w", provider="openai", upstream="w", min_plan=Plan.FREE,
        input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, context_window=window,
    )  # fmt: skip


def test_a_reply_asked_for_more_than_the_reserve_keeps_its_room_in_the_window() -> None:
    """OpenAI refuses a prompt and a reply cap that together exceed the window: a long chat
    asked for a long reply (``maxTokens``) keeps less history, never prompt + cap > window."""
    history = conversation(*[(USER if i % 2 == 0 else ASSISTANT, f"{i}" * 100) for i in range(40)])
    limits, spec = ContextLimits(reserve_for_reply=100), _window_spec(2000)

    default = limits.build(spec, history, "question", [])
    asked = limits.build(spec, history, "question", [], reply_tokens=1200)

    assert estimate_prompt_tokens(default) + 100 <= 2000 < estimate_prompt_tokens(default) + 1200
    assert estimate_prompt_tokens(asked) + 1200 <= 2000
    assert asked[-1].content == "question"
    assert [m.content for m in asked] == [m.content for m in default][-len(asked) :]
    # a small cap changes nothing: the reserve already holds it
    assert limits.build(spec, history, "question", [], reply_tokens=50) == default


def test_a_reply_cap_as_large_as_the_window_is_refused_naming_max_tokens() -> None:
    with pytest.raises(InvalidInput, match="maxTokens 2000 leaves no room") as refused:
        ContextLimits().build(_window_spec(2000), [], "question", [], reply_tokens=2000)
    assert refused.value.details["field"] == "maxTokens"


def test_a_reply_cap_leaving_a_short_message_no_room_is_refused_naming_max_tokens() -> None:
    """The message fits the window with the reply's default room: ``maxTokens`` is at fault."""
    spec = _window_spec(2000)
    with pytest.raises(InvalidInput, match="maxTokens 1999 leaves only 1 tokens") as refused:
        ContextLimits().build(spec, [], "hi", [], reply_tokens=1999)
    assert refused.value.message == (
        "maxTokens 1999 leaves only 1 tokens for this message (about 5 needed) in this "
        "model's context window of 2000 tokens."
    )
    assert refused.value.details == {"field": "maxTokens", "limit": 1995, "estimated_tokens": 5}
    ContextLimits().build(spec, [], "hi", [], reply_tokens=1995)  # the limit it names fits


def test_a_message_too_long_even_for_the_default_room_is_still_named_the_message() -> None:
    spec = _window_spec(2000)
    with pytest.raises(InvalidInput, match="This message needs about") as refused:
        ContextLimits().build(spec, [], "x" * 7000, [], reply_tokens=1500)
    assert refused.value.details["field"] == "message"


def _claude_spec(window: int, cap: int | None = None, *, adaptive: bool = False) -> ModelSpec:
    return ModelSpec(
        id="anthropic/w", provider="anthropic", upstream="w", min_plan=Plan.FREE,
        input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, context_window=window,
        reasoning=True, max_output_tokens=cap, adaptive_thinking=adaptive,
    )  # fmt: skip


PER_MESSAGE = 250  # tokens, about: finer than the smallest budget


def _long_history(window: int) -> list[Message]:
    """A chat one and a half times as long as ``window`` tokens."""
    count = window * 3 // 2 // PER_MESSAGE
    return conversation(
        *[
            (USER if i % 2 == 0 else ASSISTANT, f"{i % 10}" * (PER_MESSAGE * 4))
            for i in range(count)
        ]
    )


@pytest.mark.parametrize(
    ("provider", "cap", "default"),
    [("anthropic", None, 8192), ("anthropic", 64_000, 8192), ("anthropic", 4096, 4096),
     ("openai", 64_000, None), ("xai", None, None)],
)  # fmt: skip
def test_a_model_whose_api_requires_a_reply_cap_is_sent_one_within_its_output_cap(
    provider: str, cap: int | None, default: int | None
) -> None:
    spec = msgspec.structs.replace(_claude_spec(200_000, cap), provider=provider, reasoning=False)
    assert spec.default_max_tokens == default


def test_a_claude_reply_sent_its_default_cap_is_kept_that_room_in_a_long_chat() -> None:
    """Without maxTokens a Claude reply is sent 8,192 (Anthropic requires a cap): the prompt
    leaves that free, where a model sent none keeps the 1,024 of ``reserve_for_reply``."""
    window = 100_000
    claude = msgspec.structs.replace(_claude_spec(window), reasoning=False)
    other = msgspec.structs.replace(claude, provider="openai")
    limits, history = ContextLimits(reserve_for_reply=1024), _long_history(window)

    for_claude = limits.build(claude, history, "question", [])
    for_other = limits.build(other, history, "question", [])

    assert estimate_prompt_tokens(for_claude) + 8192 <= window
    assert estimate_prompt_tokens(for_other) + 8192 > window
    assert estimate_prompt_tokens(for_other) + 1024 <= window


@pytest.mark.parametrize(
    ("window", "cap", "default"),
    [(2_000, None, 500), (8_000, None, 2_000), (32_767, None, 8_191), (40_000, None, 8_192),
     (8_000, 1_000, 1_000)],
)  # fmt: skip
def test_claudes_default_cap_is_at_most_the_room_trimming_keeps_so_both_fit_the_window(
    window: int, cap: int | None, default: int
) -> None:
    """Trimming keeps at most a quarter of the window for the reply: a Claude model with a
    smaller window than 32,768 is sent that quarter by default, not 8,192 (which with the
    prompt would exceed the window)."""
    claude = msgspec.structs.replace(_claude_spec(window, cap), reasoning=False)

    prompt = ContextLimits(reserve_for_reply=1024).build(claude, _long_history(window), "q", [])

    assert claude.default_max_tokens == default
    assert estimate_prompt_tokens(prompt) + default <= window
    assert estimate_prompt_tokens(prompt) + default > window - 2 * PER_MESSAGE  # none wasted


@pytest.mark.parametrize(
    ("effort", "adaptive", "budget"),
    [
        (ReasoningEffort.HIGH, False, 24_576),
        (ReasoningEffort.MEDIUM, False, 8_192),
        (ReasoningEffort.MINIMAL, False, 1_024),
        (ReasoningEffort.MINIMAL, True, 2_048),  # an adaptive model asked minimal is sent low
    ],
)
def test_claudes_thinking_budget_is_kept_free_of_the_window_beside_the_reply(
    effort: ReasoningEffort, adaptive: bool, budget: int
) -> None:
    """Anthropic's max_tokens is the thinking budget plus the answer's room, and a prompt that
    with it exceeds the window is refused: the budget is kept free as well."""
    window = 100_000
    spec, limits = _claude_spec(window, adaptive=adaptive), ContextLimits(reserve_for_reply=1024)
    history = _long_history(window)

    thinking = limits.build(spec, history, "question", [], effort=effort)
    plain = limits.build(spec, history, "question", [])

    answer = spec.default_max_tokens or 1024  # what the answer is sent without maxTokens
    assert estimate_prompt_tokens(thinking) + answer + budget <= window
    assert estimate_prompt_tokens(plain) + answer + budget > window  # it needed the room
    assert thinking[-1].content == "question"
    assert [m.content for m in thinking] == [m.content for m in plain][-len(thinking) :]
    # with maxTokens, both are kept free
    asked = limits.build(spec, history, "question", [], reply_tokens=5000, effort=effort)
    assert estimate_prompt_tokens(asked) + 5000 + budget <= window


def test_the_thinking_room_kept_stays_within_the_output_cap_and_the_window() -> None:
    window, cap = 100_000, 10_000
    history = _long_history(window)
    limits = ContextLimits(reserve_for_reply=1024)

    capped = limits.build(_claude_spec(window, cap), history, "q", [], effort=ReasoningEffort.HIGH)
    # the request's max_tokens is the cap (budget and answer within it): the cap is kept free
    assert window - 2 * PER_MESSAGE < estimate_prompt_tokens(capped) + cap <= window
    # a budget larger than the window allows: a quarter of the window is left to the prompt
    small = _claude_spec(20_000)
    squeezed = limits.build(small, _long_history(20_000), "q", [], effort=ReasoningEffort.HIGH)
    assert 0 < estimate_prompt_tokens(squeezed) <= 20_000 // 4


@pytest.mark.parametrize(
    ("effort", "room"),
    [(None, 12_288), (ReasoningEffort.NONE, 0), (ReasoningEffort.LOW, 4_096),
     (ReasoningEffort.HIGH, 24_576)],
)  # fmt: skip
def test_an_openai_reasoning_model_is_kept_room_for_its_reasoning(
    effort: ReasoningEffort | None, room: int
) -> None:
    """OpenAI's reasoning models ask no budget, but their reasoning counts against the window
    before the answer: a long chat keeps the room of the effort asked (none asked: medium's)
    free beside the reply's, or the reply would end at ``length`` with nothing said."""
    window = 100_000
    openai = msgspec.structs.replace(_window_spec(window), reasoning=True)
    efforts = (*CLASSIC_EFFORTS, ReasoningEffort.NONE)
    openai = msgspec.structs.replace(openai, reasoning_efforts=efforts)
    history = _long_history(window)
    limits = ContextLimits(reserve_for_reply=1024)

    kept = limits.build(openai, history, "q", [], effort=effort)

    assert estimate_prompt_tokens(kept) + 1024 + room <= window
    assert estimate_prompt_tokens(kept) + 1024 + room > window - 2 * PER_MESSAGE


def test_a_model_that_does_not_reason_first_keeps_only_the_replys_room() -> None:
    """No reasoning room for a model that does not reason (an effort changes nothing), nor
    for a Claude model asked no effort (it thinks only when asked)."""
    window = 100_000
    plain = _window_spec(window)
    history = _long_history(window)
    limits = ContextLimits(reserve_for_reply=1024)

    assert limits.build(plain, history, "q", [], effort=ReasoningEffort.HIGH) == limits.build(
        plain, history, "q", []
    )
    # the dev model "thinks" one sentence: no room kept for it
    dev = msgspec.structs.replace(plain, provider="dev", reasoning=True)
    assert limits.build(dev, history, "q", []) == limits.build(plain, history, "q", [])
    claude = _claude_spec(window)
    assert limits.build(claude, history, "q", [], effort=None) == limits.build(
        claude, history, "q", []
    )
