"""Anthropic's prompt cache breakpoints (``anthropic_request.cache_breakpoints``): on the
system prompt, the last block of the last turn, whatever that block is, and the last block of
the turn before the model's last one (where the previous request's prompt ended), never more
than three, and never where the API refuses one (checked by the loopback cache's rules)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fake_prompt_cache import refused_breakpoints
from whalli.adapters.ai.anthropic_request import cache_breakpoints, messages_body
from whalli.domain.model.chats import GenerationParams, MessageRole, PromptMessage, ReasoningEffort
from whalli.domain.model.images import ImagePart
from whalli.domain.model.tools import ToolCall, Tools, ToolSpec
from whalli.ports.chat_model import CompletionRequest

CACHED = {"cache_control": {"type": "ephemeral"}}
WEATHER = ToolCall(id="call_1", name="weather", arguments='{"city": "Oslo"}')


def body(*messages: PromptMessage, cache: bool = True, **request: Any) -> dict[str, Any]:
    asked = CompletionRequest(model="claude-test", messages=messages, **request)
    return messages_body(asked, default_max_tokens=1024, prompt_cache=cache)


def user(text: str = "", **fields: Any) -> PromptMessage:
    return PromptMessage(role=MessageRole.USER, content=text, **fields)


def test_without_the_setting_nothing_is_marked() -> None:
    sent = body(
        PromptMessage(role=MessageRole.SYSTEM, content="Be brief."), user("Hi"), cache=False
    )
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]


def test_the_system_prompt_and_the_last_turns_text_are_marked() -> None:
    sent = body(
        PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
        user("Hi"),
        PromptMessage(role=MessageRole.ASSISTANT, content="Hello!"),
        user("Again"),
    )
    assert sent["system"] == [{"type": "text", "text": "Be brief.", **CACHED}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi", **CACHED}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Again", **CACHED}]},
    ]


def test_a_last_image_and_a_last_tool_result_take_the_mark() -> None:
    image = ImagePart(url="https://example.com/cat.png")
    sent = body(user("", parts=("Look:", image)))
    assert sent["messages"][-1]["content"] == [
        {"type": "text", "text": "Look:"},
        {
            "type": "image",
            "source": {"type": "url", "url": "https://example.com/cat.png"},
            **CACHED,
        },
    ]
    tools = Tools(specs=(ToolSpec(name="weather"),))
    sent = body(
        user("Weather?"),
        PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(WEATHER,)),
        PromptMessage(role=MessageRole.TOOL, content="9°C", tool_call_id="call_1"),
        tools=tools,
    )
    assert sent["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "9°C", **CACHED}
    ]
    # the previous step's end: the question, before the model's calls
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "Weather?", **CACHED}]
    assert "cache_control" not in str(sent["messages"][1])


def test_thinking_keeps_the_marks() -> None:
    sent = body(
        PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
        user("Why?"),
        params=GenerationParams(reasoning_effort=ReasoningEffort.LOW),
    )
    assert sent["thinking"]["type"] == "enabled"
    assert sent["messages"][-1]["content"] == [{"type": "text", "text": "Why?", **CACHED}]
    assert sent["system"][0]["cache_control"] == CACHED["cache_control"]


_TEXT = st.text(min_size=0, max_size=20)


@given(
    turns=st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), _TEXT), max_size=8)
)
def test_any_conversation_has_at_most_three_marks_where_the_api_takes_them(
    turns: list[tuple[str, str]],
) -> None:
    messages = [PromptMessage(role=MessageRole(role), content=text) for role, text in turns]
    sent = body(*messages, user("last"))
    assert refused_breakpoints(sent) is None
    assert str(sent).count("cache_control") <= 3
    assert sent["messages"][-1]["content"][-1].get("cache_control") == CACHED["cache_control"]


@pytest.mark.parametrize("system", ["", "   "])
def test_a_blank_system_prompt_is_not_marked(system: str) -> None:
    sent = body(PromptMessage(role=MessageRole.SYSTEM, content=system), user("Hi"))
    assert not isinstance(sent.get("system"), list)
    assert refused_breakpoints(sent) is None


def test_an_hour_long_cache_marks_every_breakpoint_so_and_the_api_takes_it() -> None:
    asked = CompletionRequest(
        model="claude-test",
        messages=(
            PromptMessage(role=MessageRole.SYSTEM, content="Be brief."), user("Hi"),
            PromptMessage(role=MessageRole.ASSISTANT, content="Hello."), user("More?"),
        ),
    )  # fmt: skip
    sent = messages_body(asked, default_max_tokens=1024, prompt_cache=True, cache_ttl="1h")
    hour = {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert sent["system"] == [{"type": "text", "text": "Be brief.", **hour}]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "Hi", **hour}]
    assert sent["messages"][2]["content"] == [{"type": "text", "text": "More?", **hour}]
    assert refused_breakpoints(sent) is None
    with pytest.raises(ValueError, match="5m or 1h"):
        cache_breakpoints(sent, "2h")


def test_the_api_refuses_an_hour_long_mark_after_a_five_minute_one() -> None:
    """(the loopback cache's rule, which the one-TTL marks above never break)"""
    sent = body(PromptMessage(role=MessageRole.SYSTEM, content="Be brief."), user("Hi"))
    sent["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    assert "must not come after" in (refused_breakpoints(sent) or "")


def test_a_request_without_max_tokens_is_sent_the_models_default_cap_not_1024() -> None:
    """Anthropic requires ``max_tokens``: without one asked, the catalog's default for the
    model (``default_max_tokens``) is sent, within its output cap; one asked wins."""
    assert body(user("hi"), default_max_tokens=8192)["max_tokens"] == 8192
    assert body(user("hi"))["max_tokens"] == 1024  # no default known: the adapter's own
    asked = GenerationParams(max_tokens=300)
    assert body(user("hi"), default_max_tokens=8192, params=asked)["max_tokens"] == 300
    capped = body(user("hi"), default_max_tokens=8192, max_output_tokens=4096)
    assert capped["max_tokens"] == 4096
