from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from whalli.domain.model.chats import (
    GenerationParams,
    Message,
    MessageRole,
    PromptMessage,
    TokenUsage,
)
from whalli.domain.model.prompt_cache import (
    CONTEXT_VERSION,
    CachedReply,
    cache_key,
    decode_cached_reply,
    encode_cached_reply,
    user_scope,
)
from whalli.domain.model.response_format import FormatType, JsonSchema, ResponseFormat
from whalli.domain.model.tools import ToolCall, ToolChoice, ToolChoiceMode, Tools, ToolSpec

roles = st.sampled_from(list(MessageRole))
contents = st.text() | st.sampled_from(["", "a", "ab", "\n", "é", "e\u0301", "日本", "🐳", '"]'])
prompt_messages = st.builds(PromptMessage, role=roles, content=contents)
message_lists = st.lists(prompt_messages, max_size=6)
params = st.builds(
    GenerationParams,
    temperature=st.none() | st.floats(min_value=0.0, max_value=2.0),
    max_tokens=st.none() | st.integers(min_value=1, max_value=1_000_000),
)
model_ids = st.text(min_size=1)


def key(
    messages: list[PromptMessage],
    model_id: str = "gpt-4o",
    generation: GenerationParams | None = None,
) -> str:
    return cache_key(model_id=model_id, messages=messages, params=generation or GenerationParams())


def pairs(messages: list[PromptMessage]) -> list[tuple[str, str]]:
    return [(str(m.role), m.content) for m in messages]


# --- what must change the key -------------------------------------------------------------------
@given(message_lists, message_lists)
def test_the_key_changes_exactly_when_the_context_changes(
    a: list[PromptMessage], b: list[PromptMessage]
) -> None:
    assert (key(a) == key(b)) == (pairs(a) == pairs(b))


@given(message_lists, st.data())
def test_changing_any_character_of_any_message_changes_the_key(
    messages: list[PromptMessage], data: st.DataObject
) -> None:
    assume(any(m.content for m in messages))
    index = data.draw(st.sampled_from([i for i, m in enumerate(messages) if m.content]))
    content = messages[index].content
    position = data.draw(st.integers(min_value=0, max_value=len(content) - 1))
    # Any character a message can hold: JSON requests cannot carry lone surrogates (the decoder
    # refuses them), and ``contents`` (``st.text()``) draws none either.
    replacement = data.draw(
        st.characters(exclude_categories=("Cs",)).filter(lambda c: c != content[position])
    )
    changed = list(messages)
    changed[index] = PromptMessage(
        role=messages[index].role,
        content=content[:position] + replacement + content[position + 1 :],
    )

    assert key(changed) != key(messages)


@given(message_lists, st.data())
def test_changing_a_role_changes_the_key(
    messages: list[PromptMessage], data: st.DataObject
) -> None:
    assume(messages)
    index = data.draw(st.integers(min_value=0, max_value=len(messages) - 1))
    role = data.draw(roles.filter(lambda r: r != messages[index].role))
    changed = list(messages)
    changed[index] = PromptMessage(role=role, content=messages[index].content)

    assert key(changed) != key(messages)


@given(message_lists, st.permutations(range(6)))
def test_reordering_messages_changes_the_key_unless_the_order_is_the_same(
    messages: list[PromptMessage], order: list[int]
) -> None:
    reordered = [messages[i] for i in order if i < len(messages)]

    assert (key(reordered) == key(messages)) == (pairs(reordered) == pairs(messages))


def test_moving_text_between_messages_changes_the_key() -> None:
    user, assistant = MessageRole.USER, MessageRole.ASSISTANT
    split_after_b = [PromptMessage(role=user, content="ab"), PromptMessage(role=user, content="c")]
    split_after_a = [PromptMessage(role=user, content="a"), PromptMessage(role=user, content="bc")]
    joined = [PromptMessage(role=user, content="abc")]
    other_role = [PromptMessage(role=assistant, content="ab"), split_after_b[1]]

    assert len({key(split_after_b), key(split_after_a), key(joined), key(other_role)}) == 4


@given(model_ids, model_ids, message_lists)
def test_the_key_changes_exactly_when_the_model_changes(
    a: str, b: str, messages: list[PromptMessage]
) -> None:
    assert (key(messages, model_id=a) == key(messages, model_id=b)) == (a == b)


@given(params, params, message_lists)
def test_the_key_changes_exactly_when_the_generation_parameters_change(
    a: GenerationParams, b: GenerationParams, messages: list[PromptMessage]
) -> None:
    assert (key(messages, generation=a) == key(messages, generation=b)) == (a == b)


def test_temperature_and_max_tokens_each_change_the_key() -> None:
    messages = [PromptMessage(role=MessageRole.USER, content="hi")]
    keys = {
        key(messages),
        key(messages, generation=GenerationParams(temperature=0.7)),
        key(messages, generation=GenerationParams(temperature=0.70001)),
        key(messages, generation=GenerationParams(max_tokens=100)),
        key(messages, generation=GenerationParams(max_tokens=101)),
        key(messages, generation=GenerationParams(temperature=0.7, max_tokens=100)),
    }

    assert len(keys) == 6


def test_a_new_context_version_changes_every_key() -> None:
    messages = [PromptMessage(role=MessageRole.USER, content="hi")]

    def versioned(version: str) -> str:
        return cache_key(
            model_id="gpt-4o", messages=messages, params=GenerationParams(), context_version=version
        )

    assert versioned("v2") != key(messages)
    assert versioned(CONTEXT_VERSION) == key(messages)


# --- what must not matter -----------------------------------------------------------------------
def history(texts: list[tuple[MessageRole, str]]) -> list[Message]:
    chat_id, start = uuid4(), datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=uuid4().int % 999)
    return [
        Message(
            id=uuid4(),
            chat_id=chat_id,
            role=role,
            content=text,
            created_at=start + timedelta(seconds=i),
            updated_at=start + timedelta(seconds=i),
        )
        for i, (role, text) in enumerate(texts)
    ]


@given(st.lists(st.tuples(roles, contents), max_size=6))
def test_message_ids_timestamps_and_chats_do_not_change_the_key(
    texts: list[tuple[MessageRole, str]],
) -> None:
    # Two chats (other ids, other times, possibly other users and sessions) with the same words.
    first, second = history(texts), history(texts)

    def prompt(messages: list[Message]) -> list[PromptMessage]:
        return [PromptMessage(role=m.role, content=m.content) for m in messages]

    assert key(prompt(first)) == key(prompt(second))


def test_field_order_and_explicit_nulls_do_not_change_the_key() -> None:
    messages = [PromptMessage(role=MessageRole.USER, content="hi")]
    spellings = [
        b'{"temperature": 0.5, "max_tokens": 10}',
        b'{"max_tokens": 10, "temperature": 0.5}',
    ]
    nulls = [b"{}", b'{"temperature": null}', b'{"temperature": null, "max_tokens": null}']

    def keys(documents: list[bytes]) -> set[str]:
        decoded = [msgspec.json.decode(d, type=GenerationParams) for d in documents]
        return {key(messages, generation=p) for p in decoded}

    assert len(keys(spellings)) == 1
    assert keys(nulls) == {key(messages)}


def test_the_same_temperature_spelled_differently_gives_the_same_key() -> None:
    messages = [PromptMessage(role=MessageRole.USER, content="hi")]
    spelled = [GenerationParams(temperature=t) for t in (1, 1.0)]
    zeros = [GenerationParams(temperature=t) for t in (0, 0.0, -0.0)]

    assert len({key(messages, generation=p) for p in spelled}) == 1
    assert len({key(messages, generation=p) for p in zeros}) == 1


def test_a_role_given_as_its_string_value_gives_the_same_key() -> None:
    enum_role = [PromptMessage(role=MessageRole.USER, content="hi")]
    decoded = msgspec.json.decode(b'[{"role": "user", "content": "hi"}]', type=list[PromptMessage])

    assert key(decoded) == key(enum_role)


def test_the_key_is_a_stable_sha256() -> None:
    messages = [
        PromptMessage(role=MessageRole.USER, content="Hello"),
        PromptMessage(role=MessageRole.ASSISTANT, content="Hi! 🐳"),
    ]
    generation = GenerationParams(temperature=0.2, max_tokens=64)

    assert key(messages, generation=generation) == key(list(messages), generation=generation)
    assert len(key(messages)) == 64
    assert int(key(messages), 16) >= 0


# --- the cached reply ---------------------------------------------------------------------------
usages = st.builds(
    TokenUsage,
    prompt_tokens=st.integers(min_value=0, max_value=2**40),
    completion_tokens=st.integers(min_value=0, max_value=2**40),
)
replies = st.builds(
    CachedReply,
    deltas=st.lists(st.text() | st.sampled_from(["", " ", "\n", "\r\n", "🐳"])).map(tuple),
    finish_reason=st.sampled_from(["stop", "length"]) | st.text(),
    usage=usages,
)


@given(replies)
def test_a_cached_reply_round_trips_with_its_token_boundaries(reply: CachedReply) -> None:
    decoded = decode_cached_reply(encode_cached_reply(reply))

    assert decoded == reply
    assert decoded.deltas == reply.deltas
    assert decoded.text == "".join(reply.deltas)


def test_a_cached_reply_keeps_each_delta_apart() -> None:
    reply = CachedReply(deltas=("Hel", "lo", "", " world"), finish_reason="stop")

    assert decode_cached_reply(encode_cached_reply(reply)).deltas == ("Hel", "lo", "", " world")
    assert reply.text == "Hello world"


WRONG_SHAPE = msgspec.msgpack.encode({"deltas": "not a list", "finish_reason": "stop"})


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"not msgpack", WRONG_SHAPE])
def test_bytes_that_are_not_a_cached_reply_are_refused(garbage: bytes) -> None:
    with pytest.raises(ValueError, match="not a cached reply"):
        decode_cached_reply(garbage)


# --- tools ----------------------------------------------------------------------------------------
PINNED_MESSAGES = (
    PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
    PromptMessage(role=MessageRole.USER, content="What is 2+2?"),
    PromptMessage(role=MessageRole.ASSISTANT, content="4"),
    PromptMessage(role=MessageRole.USER, content="And 3+3?"),
)
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')


def test_keys_of_requests_without_tools_are_the_ones_computed_before_tools_existed() -> None:
    # Computed with the code of the commit before tool calling: a change here would turn every
    # cached reply (shared Redis, an hour of them) into a miss at the next deploy.
    scope = user_scope(UUID("12345678-1234-5678-1234-567812345678"))
    generation = GenerationParams(temperature=0, max_tokens=50, stop=("END",))

    pinned = cache_key(
        model_id="openai/gpt-4o-mini", messages=PINNED_MESSAGES, params=generation, scope=scope
    )
    plain = cache_key(model_id="dev/echo", messages=PINNED_MESSAGES[1:2], params=GenerationParams())

    assert pinned == "75d4e9788aa976476c303a19573b34f7863231d54fa52418c7ac948e727e8c12"
    assert plain == "309e4ffe88bd6c39fa6f904930bc9683e4debe02a5f4f7fbe90210e159bee3a0"
    assert (
        cache_key(
            model_id="dev/echo",
            messages=PINNED_MESSAGES[1:2],
            params=GenerationParams(),
            tools=None,
        )
        == plain
    )


def tools_key(tools: Tools | None, messages: tuple[PromptMessage, ...] = PINNED_MESSAGES) -> str:
    return cache_key(model_id="m", messages=messages, params=GenerationParams(), tools=tools)


def test_tools_their_choice_and_parallel_calls_are_part_of_the_key() -> None:
    other = ToolSpec(name="get_time")
    variants = [
        None,
        Tools(specs=(WEATHER,)),
        Tools(specs=(WEATHER, other)),
        Tools(specs=(other, WEATHER)),
        Tools(specs=(msgspec.structs.replace(WEATHER, description="Other words."),)),
        Tools(specs=(msgspec.structs.replace(WEATHER, parameters={"type": "object"}),)),
        Tools(specs=(msgspec.structs.replace(WEATHER, strict=True),)),
        Tools(specs=(WEATHER,), choice=ToolChoice(mode=ToolChoiceMode.AUTO)),
        Tools(specs=(WEATHER,), choice=ToolChoice(mode=ToolChoiceMode.REQUIRED)),
        Tools(specs=(WEATHER,), choice=ToolChoice(mode=ToolChoiceMode.NONE)),
        Tools(
            specs=(WEATHER,), choice=ToolChoice(mode=ToolChoiceMode.FUNCTION, name="get_weather")
        ),
        Tools(specs=(WEATHER,), parallel=False),
        Tools(specs=(WEATHER,), parallel=True),
    ]

    assert len({tools_key(t) for t in variants}) == len(variants)


def test_the_same_tools_give_the_same_key_whatever_the_schemas_key_order() -> None:
    reordered = msgspec.json.decode(
        b'{"properties": {"city": {"type": "string"}}, "type": "object"}'
    )
    again = msgspec.structs.replace(WEATHER, parameters=reordered)

    assert tools_key(Tools(specs=(again,))) == tools_key(Tools(specs=(WEATHER,)))


def test_tool_calls_and_tool_answers_in_the_context_are_part_of_the_key() -> None:
    asked = PromptMessage(role=MessageRole.USER, content="Weather in Paris?")
    called = PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(CALL,))
    answered = PromptMessage(role=MessageRole.TOOL, content="18°C", tool_call_id="call_1")

    def calling(call: ToolCall) -> PromptMessage:
        return msgspec.structs.replace(called, tool_calls=(call,))

    contexts = [
        (asked, PromptMessage(role=MessageRole.ASSISTANT, content="")),
        (asked, called),
        (asked, calling(msgspec.structs.replace(CALL, id="call_2"))),
        (asked, calling(msgspec.structs.replace(CALL, arguments="{}"))),
        (asked, called, answered),
        (asked, called, msgspec.structs.replace(answered, content="19°C")),
        (asked, called, PromptMessage(role=MessageRole.TOOL, content="18°C")),
    ]  # fmt: skip
    tools = Tools(specs=(WEATHER,))

    assert len({tools_key(tools, c) for c in contexts}) == len(contexts)


def test_a_cached_reply_keeps_its_tool_calls_and_older_entries_still_read() -> None:
    reply = CachedReply(deltas=("Let me look.",), finish_reason="tool_calls", tool_calls=(CALL,))
    written_before_tools = msgspec.msgpack.encode(
        {"deltas": ["Hi"], "finish_reason": "stop", "usage": {"prompt_tokens": 1}}
    )

    assert decode_cached_reply(encode_cached_reply(reply)) == reply
    assert decode_cached_reply(written_before_tools) == CachedReply(
        deltas=("Hi",), finish_reason="stop", usage=TokenUsage(prompt_tokens=1)
    )


# --- response formats (JSON mode, structured outputs) -------------------------------------------
FORMAT_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def json_schema_format(schema: dict[str, Any] | None = None, **extra: Any) -> ResponseFormat:
    fields = {"name": "weather", "schema": FORMAT_SCHEMA if schema is None else schema, **extra}
    return ResponseFormat(type=FormatType.JSON_SCHEMA, json_schema=JsonSchema(**fields))


def format_key(response_format: ResponseFormat | None, tools: Tools | None = None) -> str:
    return cache_key(
        model_id="m", messages=PINNED_MESSAGES, params=GenerationParams(), tools=tools,
        response_format=response_format,
    )  # fmt: skip


def test_keys_of_requests_without_a_format_are_the_ones_computed_before_formats_existed() -> None:
    scope = user_scope(UUID("12345678-1234-5678-1234-567812345678"))
    generation = GenerationParams(temperature=0, max_tokens=50, stop=("END",))

    pinned = cache_key(
        model_id="openai/gpt-4o-mini", messages=PINNED_MESSAGES, params=generation, scope=scope,
        response_format=None,
    )  # fmt: skip

    assert pinned == "75d4e9788aa976476c303a19573b34f7863231d54fa52418c7ac948e727e8c12"
    assert format_key(None, Tools(specs=(WEATHER,))) == tools_key(Tools(specs=(WEATHER,)))


def test_the_format_and_every_part_of_its_schema_are_part_of_the_key() -> None:
    other_schema = {"type": "object", "properties": {"town": {"type": "string"}}}
    variants = [
        None,
        ResponseFormat(type=FormatType.JSON_OBJECT),
        json_schema_format(),
        json_schema_format(other_schema),
        json_schema_format(name="forecast"),
        json_schema_format(strict=True),
        json_schema_format(strict=False),
        json_schema_format(description="The weather."),
        ResponseFormat(type=FormatType.JSON_SCHEMA, json_schema=JsonSchema(name="weather")),
    ]

    assert len({format_key(f) for f in variants}) == len(variants)


def test_a_format_and_tools_are_keyed_apart() -> None:
    tools = Tools(specs=(WEATHER,))
    keys = [
        format_key(None, tools),
        format_key(ResponseFormat(type=FormatType.JSON_OBJECT), None),
        format_key(ResponseFormat(type=FormatType.JSON_OBJECT), tools),
        format_key(None, None),
    ]

    assert len(set(keys)) == len(keys)


def test_the_same_format_gives_the_same_key_whatever_the_schemas_key_order() -> None:
    reordered = msgspec.json.decode(
        b'{"properties": {"city": {"type": "string"}}, "type": "object"}'
    )
    nested = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}
    nested_reordered = msgspec.json.decode(
        b'{"properties": {"a": {"maxLength": 3, "type": "string"}}, "type": "object"}'
    )

    assert list(reordered) != list(FORMAT_SCHEMA)
    assert format_key(json_schema_format(reordered)) == format_key(json_schema_format())
    assert format_key(json_schema_format(nested_reordered)) == format_key(
        json_schema_format(nested)
    )
