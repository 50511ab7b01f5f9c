"""Tool calling in the domain: the rules on the tools offered, on tool turns, and calls put
back together from their pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.chats import MessageRole, PromptMessage, check_tool_turns
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.tools import (
    MAX_TOOLS,
    ToolCall,
    ToolCallAssembly,
    ToolChoice,
    ToolChoiceMode,
    Tools,
    ToolSpec,
)


def specs(*names: str) -> tuple[ToolSpec, ...]:
    return tuple(ToolSpec(name=name) for name in names)


@pytest.mark.parametrize("name", ["a", "get_weather", "A-b_9", "x" * 64])
def test_a_function_name_of_letters_digits_underscores_and_dashes_is_accepted(name: str) -> None:
    assert Tools(specs=specs(name)).specs[0].name == name


@pytest.mark.parametrize("name", ["", "x" * 65, "get weather", "get.weather", "météo", "a/b"])
def test_a_function_name_outside_openais_pattern_is_refused_naming_its_place(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"tools\[1\]\.function\.name must be") as raised:
        Tools(specs=(ToolSpec(name="ok"), ToolSpec(name=name)))

    assert raised.value.details["field"] == "tools[1].function.name"


def test_at_most_128_tools_and_at_least_one() -> None:
    assert len(Tools(specs=specs(*(f"f{i}" for i in range(MAX_TOOLS)))).specs) == MAX_TOOLS
    for count in (0, MAX_TOOLS + 1):
        with pytest.raises(InvalidInput, match="tools takes 1 to 128 tools") as raised:
            Tools(specs=specs(*(f"f{i}" for i in range(count))))
        assert raised.value.details["field"] == "tools"


def test_two_tools_of_one_name_are_refused() -> None:
    with pytest.raises(InvalidInput, match="'f' is given twice") as raised:
        Tools(specs=specs("f", "g", "f"))

    assert raised.value.details["field"] == "tools[2].function.name"


def test_a_tool_choice_must_name_one_of_the_tools() -> None:
    named = ToolChoice(mode=ToolChoiceMode.FUNCTION, name="g")
    assert Tools(specs=specs("f", "g"), choice=named).choice == named

    with pytest.raises(InvalidInput, match="names the function 'h', which is not in tools") as e:
        Tools(specs=specs("f", "g"), choice=ToolChoice(mode=ToolChoiceMode.FUNCTION, name="h"))
    assert e.value.details["field"] == "tool_choice"


CALL = ToolCall(id="call_1", name="f", arguments="{}")


def test_a_tool_turn_answering_an_earlier_call_is_accepted() -> None:
    messages = [
        PromptMessage(role=MessageRole.USER, content="go"),
        PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(CALL,)),
        PromptMessage(role=MessageRole.TOOL, content="done", tool_call_id="call_1"),
        PromptMessage(role=MessageRole.USER, content="and now?"),
    ]

    check_tool_turns(messages)


@pytest.mark.parametrize(
    ("messages", "said"),
    [
        # answering a call made later, an unknown call, no call id at all
        pytest.param(
            [
                PromptMessage(role=MessageRole.TOOL, content="done", tool_call_id="call_1"),
                PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(CALL,)),
            ],
            "answers no tool call",
            id="before_the_call",
        ),
        pytest.param(
            [
                PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(CALL,)),
                PromptMessage(role=MessageRole.TOOL, content="done", tool_call_id="call_2"),
            ],
            "answers no tool call",
            id="unknown_call",
        ),
        pytest.param(
            [
                PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(CALL,)),
                PromptMessage(role=MessageRole.TOOL, content="done"),
            ],
            r"tool_call_id is required for a tool message\.$",
            id="no_call_id",
        ),
    ],
)
def test_a_tool_turn_answering_no_earlier_call_is_refused_naming_it(
    messages: list[PromptMessage], said: str
) -> None:
    index = next(i for i, m in enumerate(messages) if m.role is MessageRole.TOOL)

    with pytest.raises(InvalidInput, match=said) as raised:
        check_tool_turns(messages)

    assert raised.value.details["field"] == f"messages[{index}].tool_call_id"


def _turn(*calls: ToolCall) -> PromptMessage:
    return PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=calls)


def _answer(call_id: str) -> PromptMessage:
    return PromptMessage(role=MessageRole.TOOL, content="done", tool_call_id=call_id)


ASK = PromptMessage(role=MessageRole.USER, content="weather?")
SECOND = ToolCall(id="call_2", name="g", arguments="{}")


@pytest.mark.parametrize(
    ("messages", "field", "message"),
    [
        ([ASK, _turn(CALL, SECOND), _answer("call_1"), ASK], "messages[1].tool_calls",
         "every call"),
        ([ASK, _turn(CALL)], "messages[1].tool_calls", "every call"),  # the conversation ends
        ([ASK, _turn(CALL), ASK, _answer("call_1")], "messages[3].tool_call_id", "right before"),
        ([ASK, _turn(CALL), _answer("call_1"), _answer("call_1")], "messages[3].tool_call_id",
         "already answered"),
        ([ASK, _turn(CALL, ToolCall(id="call_1", name="g", arguments="{}"))],
         "messages[1].tool_calls[1].id", "another call"),
        ([ASK, _turn(ToolCall(id="c", name="<script>", arguments="{}"))],
         "messages[1].tool_calls[0].function.name", "letters, digits"),
    ],
    ids=["one_unanswered", "answers_missing_at_the_end", "tool_after_a_user_turn",
         "answered_twice", "duplicate_id", "bad_name"],
)  # fmt: skip
def test_tool_turns_must_answer_each_call_right_after_it(
    messages: list[PromptMessage], field: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        check_tool_turns(messages)
    assert raised.value.details["field"] == field


def test_parallel_calls_answered_in_any_order_are_fine() -> None:
    check_tool_turns([ASK, _turn(CALL, SECOND), _answer("call_2"), _answer("call_1"), ASK])


@given(st.lists(st.text(), min_size=1, max_size=8), st.lists(st.text(), max_size=8))
def test_a_call_put_back_together_joins_its_pieces_in_order(
    first: list[str], second: list[str]
) -> None:
    assembly = ToolCallAssembly()
    assert not assembly
    assembly.add(1, "call_b", "g", "")
    assembly.add(0, "call_a", "f", first[0])
    for piece in first[1:]:
        assembly.add(0, None, None, piece)
    for piece in second:
        assembly.add(1, None, None, piece)

    assert assembly
    assert assembly.calls() == (
        ToolCall(id="call_a", name="f", arguments="".join(first)),
        ToolCall(id="call_b", name="g", arguments="".join(second)),
    )
    assert assembly.text() == "f" + "".join(first) + "g" + "".join(second)
