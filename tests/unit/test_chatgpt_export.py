"""Reading ChatGPT's conversations.json: the branch shown, text only, times, and never a crash."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whalli.domain.model.chat_imports import (
    IMPORTED_PROVIDER,
    ParsedConversation,
    ParsedMessage,
    SkippedConversation,
    build_chat,
    import_title,
)
from whalli.domain.model.chatgpt_export import parse_chatgpt, parse_conversation
from whalli.domain.model.chats import TITLE_MAX, MessageRole, MessageStatus
from whalli.domain.model.errors import InvalidInput

T = 1_700_000_000.0  # 2023-11-14, as ChatGPT writes times: epoch seconds with a fraction


def message(
    role: str,
    *parts: Any,
    at: float | None = None,
    content_type: str = "text",
    **metadata: Any,
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "author": {"role": role, "name": None, "metadata": {}},
        "create_time": at,
        "update_time": None,
        "content": {"content_type": content_type, "parts": list(parts)},
        "status": "finished_successfully",
        "end_turn": True,
        "weight": 1.0,
        "metadata": metadata,
        "recipient": "all",
    }


def conversation(
    nodes: list[tuple[str, str | None, dict[str, Any] | None]],
    current: str | None,
    title: str = "Trip to Lisbon",
) -> dict[str, Any]:
    """A conversation as exported: nodes are (id, parent, message); children derived."""
    mapping: dict[str, Any] = {
        node_id: {"id": node_id, "message": msg, "parent": parent, "children": []}
        for node_id, parent, msg in nodes
    }
    for node_id, parent, _ in nodes:
        if parent is not None:
            mapping[parent]["children"].append(node_id)
    doc: dict[str, Any] = {
        "title": title,
        "create_time": T,
        "update_time": T + 600,
        "mapping": mapping,
        "moderation_results": [],
        "plugin_ids": None,
        "conversation_id": "6571a0b2-1c3e-8000-9a8b-0123456789ab",
        "conversation_template_id": None,
        "gizmo_id": None,
        "is_archived": False,
        "safe_urls": [],
        "default_model_slug": "gpt-4o",
        "id": "6571a0b2-1c3e-8000-9a8b-0123456789ab",
    }
    if current is not None:
        doc["current_node"] = current
    return doc


def lisbon() -> dict[str, Any]:
    """A realistic export: hidden system prompt, an edited question (two branches), a
    regenerated answer, a tool call, and the branch shown ending at ``a2b``."""
    return conversation(
        [
            ("root", None, None),
            ("sys", "root", message("system", "", is_visually_hidden_from_conversation=True)),
            (
                "ctx",
                "sys",
                message(
                    "user",
                    content_type="user_editable_context",
                    is_visually_hidden_from_conversation=True,
                ),
            ),
            ("u1", "ctx", message("user", "Plan 3 days in Lisbon", at=T + 1)),
            ("a1-old", "u1", message("assistant", "An old answer", at=T + 2)),
            (
                "a1",
                "u1",
                message(
                    "assistant", "Day 1: Alfama.", "Day 2: Belém.", at=T + 3, model_slug="gpt-4o"
                ),
            ),
            ("u2-old", "a1", message("user", "an edit left behind", at=T + 4)),
            ("u2", "a1", message("user", "And food?", at=T + 5)),
            (
                "hid",
                "u2",
                message(
                    "assistant",
                    "a note not shown",
                    at=T + 5.5,
                    is_visually_hidden_from_conversation=True,
                ),
            ),
            ("tool", "hid", message("tool", "search results", at=T + 6)),
            (
                "a2a",
                "tool",
                message("assistant", "Pastéis de nata 🥮", at=T + 7, model_slug="gpt-4o"),
            ),
            (
                "a2b",
                "tool",
                message("assistant", "Try bacalhau — 🐟", at=T + 8, model_slug="gpt-4o"),
            ),
        ],
        current="a2b",
    )


def parsed_one(doc: dict[str, Any]) -> ParsedConversation:
    [result] = parse_chatgpt([doc])
    assert isinstance(result, ParsedConversation), result
    return result


def texts(parsed: ParsedConversation) -> list[tuple[str, str]]:
    return [(m.role.value, m.content) for m in parsed.messages]


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_only_the_branch_up_to_the_current_node_is_kept_with_text_turns() -> None:
    parsed = parsed_one(lisbon())
    assert texts(parsed) == [
        ("user", "Plan 3 days in Lisbon"),
        ("assistant", "Day 1: Alfama.\n\nDay 2: Belém."),
        ("user", "And food?"),
        ("assistant", "Try bacalhau — 🐟"),
    ]
    assert [m.created_at for m in parsed.messages] == [at(T + 1), at(T + 3), at(T + 5), at(T + 8)]
    assert [m.model for m in parsed.messages] == [None, "chatgpt/gpt-4o", None, "chatgpt/gpt-4o"]
    assert (parsed.title, parsed.created_at, parsed.updated_at) == (
        "Trip to Lisbon", at(T), at(T + 600),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("slug", "model"),
    [
        (
            "gpt-4o\n\n# Injected heading\n\x1b[31mred\u202e",
            "chatgpt/gpt-4o # Injected heading [31mred",
        ),
        ("  o1\u200b-mini\x00 ", "chatgpt/o1-mini"),
        ("\u200b\n\x07", None),  # nothing visible: no model
        ("m" * 300, "chatgpt/" + "m" * 192),
    ],
)
def test_a_model_slug_becomes_one_line_of_visible_text(slug: str, model: str | None) -> None:
    doc = conversation(
        [
            ("u", None, message("user", "q", at=T)),
            ("a", "u", message("assistant", "a", at=T + 1, model_slug=slug)),
        ],
        current="a",
    )
    assert [m.model for m in parsed_one(doc).messages] == [None, model]


def test_another_current_node_shows_the_other_branch() -> None:
    doc = lisbon()
    doc["current_node"] = "u2-old"
    assert texts(parsed_one(doc))[-1] == ("user", "an edit left behind")
    doc["current_node"] = "a1-old"
    assert texts(parsed_one(doc)) == [
        ("user", "Plan 3 days in Lisbon"), ("assistant", "An old answer"),
    ]  # fmt: skip


def test_multimodal_parts_keep_their_text_and_drop_images() -> None:
    image = {
        "content_type": "image_asset_pointer",
        "asset_pointer": "file-service://file-abc",
        "size_bytes": 123456, "width": 1024, "height": 768, "metadata": None,
    }  # fmt: skip
    doc = conversation(
        [
            ("root", None, None),
            (
                "u",
                "root",
                message(
                    "user",
                    image,
                    "What is in this photo?",
                    "",
                    content_type="multimodal_text",
                    at=T,
                ),
            ),
            ("i", "u", message("user", image, content_type="multimodal_text", at=T + 1)),
            ("a", "i", message("assistant", "A cat.", None, 42, at=T + 2)),
        ],
        current="a",
    )
    assert texts(parsed_one(doc)) == [("user", "What is in this photo?"), ("assistant", "A cat.")]


def test_code_content_becomes_a_fenced_block_and_other_types_are_dropped() -> None:
    code = message("assistant", at=T + 1)
    code["content"] = {"content_type": "code", "language": "python", "text": "print(1)\n"}
    unknown = message("assistant", at=T + 2)
    unknown["content"] = {"content_type": "code", "language": "unknown", "text": "x = 2"}
    quote = message("user", at=T + 3)
    quote["content"] = {"content_type": "tether_quote", "url": "u", "title": "t", "text": "q"}
    doc = conversation(
        [("u", None, message("user", "run it", at=T)), ("c", "u", code), ("k", "c", unknown),
         ("q", "k", quote)],
        current="q",
    )  # fmt: skip
    assert texts(parsed_one(doc)) == [
        ("user", "run it"),
        ("assistant", "```python\nprint(1)\n```"),
        ("assistant", "```\nx = 2\n```"),
    ]


def test_blank_messages_and_unknown_roles_are_skipped() -> None:
    doc = conversation(
        [
            ("u", None, message("user", "hi", at=T)),
            ("blank", "u", message("assistant", "  ", "\n", at=T + 1)),
            ("nobody", "blank", message("critic", "hmm", at=T + 2)),
            ("a", "nobody", message("assistant", "hello", at=T + 3)),
        ],
        current="a",
    )
    assert texts(parsed_one(doc)) == [("user", "hi"), ("assistant", "hello")]


def test_missing_times_are_none_and_unicode_is_kept_without_nul() -> None:
    doc = conversation(
        [("u", None, message("user", "Ünïcødé 日本語 \x00ok", at=None)),
         ("a", "u", message("assistant", "𝔘𝔫𝔦", at=float("nan")))],
        current="a", title="",
    )  # fmt: skip
    del doc["create_time"]
    doc["update_time"] = 1e300
    parsed = parsed_one(doc)
    assert texts(parsed) == [("user", "Ünïcødé 日本語 ok"), ("assistant", "𝔘𝔫𝔦")]
    assert [m.created_at for m in parsed.messages] == [None, None]
    assert (parsed.title, parsed.created_at, parsed.updated_at) == ("", None, None)


def test_a_cycle_of_parent_links_ends_the_path_instead_of_looping() -> None:
    doc = conversation(
        [("u", None, message("user", "one", at=T)), ("a", "u", message("assistant", "two"))],
        current="a",
    )
    doc["mapping"]["u"]["parent"] = "a"  # u -> a -> u -> ...
    assert texts(parsed_one(doc)) == [("user", "one"), ("assistant", "two")]
    doc["mapping"]["a"]["parent"] = "a"  # a node its own parent
    assert texts(parsed_one(doc)) == [("assistant", "two")]


def test_without_a_current_node_the_latest_leaf_is_shown() -> None:
    doc = lisbon()
    del doc["current_node"]
    assert texts(parsed_one(doc))[-1] == ("assistant", "Try bacalhau — 🐟")  # a2b, at T + 8
    doc["current_node"] = "no-such-node"
    doc["mapping"]["a1-old"]["message"]["create_time"] = T + 100
    assert texts(parsed_one(doc))[-1] == ("assistant", "An old answer")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("a string", "not a conversation object"),
        ({"title": "t"}, "no mapping"),
        ({"title": "t", "mapping": []}, "no mapping"),
        ({"title": "t", "mapping": {"x": "not a node"}}, "current message could not be found"),
        (conversation([("root", None, None)], current="root"), "no user or assistant message"),
        (conversation([("s", None, message("system", "be nice"))], current="s"),
         "no user or assistant message"),
    ],
)  # fmt: skip
def test_unreadable_or_empty_conversations_are_skipped_with_a_reason(
    item: object, reason: str
) -> None:
    result = parse_conversation(3, item)
    assert isinstance(result, SkippedConversation)
    assert result.index == 3
    assert reason in result.reason


def test_a_skipped_conversation_keeps_its_title_and_its_place() -> None:
    empty = conversation([("root", None, None)], current="root", title="Empty one")
    results = parse_chatgpt([lisbon(), empty, lisbon()])
    assert [type(r).__name__ for r in results] == [
        "ParsedConversation", "SkippedConversation", "ParsedConversation",
    ]  # fmt: skip
    assert (results[1].index, results[1].title) == (1, "Empty one")


@pytest.mark.parametrize("document", [{}, "conversations", None, 3])
def test_a_document_that_is_not_a_list_is_invalid(document: object) -> None:
    with pytest.raises(InvalidInput, match="JSON array of conversations"):
        parse_chatgpt(document)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=30,
)  # fmt: skip
keys = st.sampled_from(["u", "a", "root", "x"])
node_like = st.fixed_dictionaries(
    {},
    optional={
        "parent": keys | json_values, "children": st.lists(keys | json_values, max_size=3),
        "message": json_values | st.fixed_dictionaries({}, optional={
            "author": st.fixed_dictionaries({}, optional={"role": st.sampled_from(
                ["user", "assistant", "system", "tool"]) | json_values}),
            "content": st.fixed_dictionaries({}, optional={
                "content_type": st.sampled_from(["text", "code", "multimodal_text"])
                | json_values,
                "parts": json_values, "text": json_values, "language": json_values}),
            "create_time": json_values, "metadata": json_values,
        }),
    },
)  # fmt: skip
conversation_like = json_values | st.fixed_dictionaries(
    {},
    optional={
        "title": json_values, "create_time": json_values, "update_time": json_values,
        "current_node": keys | json_values,
        "mapping": st.dictionaries(keys, node_like | json_values, max_size=4) | json_values,
    },
)  # fmt: skip


@pytest.mark.parametrize("kind", [[], {}, ["text"], {"text": 1}])
def test_a_content_type_that_is_not_a_string_is_no_text(kind: Any) -> None:
    """Found by the property below (a fresh clone's run): a list as ``content_type`` raised
    ``TypeError: unhashable type`` instead of the message being left out."""
    node = {"message": {"author": {"role": "user"}, "content": {"content_type": kind}}}
    item = {"title": None, "current_node": "u", "mapping": {"u": node}}

    result = parse_conversation(0, item)

    assert isinstance(result, SkippedConversation)
    assert result.reason


@settings(max_examples=400, deadline=None)
@given(conversation_like)
def test_any_json_value_as_a_conversation_is_parsed_or_skipped_never_raised(item: Any) -> None:
    before = copy.deepcopy(item)
    result = parse_conversation(0, item)
    if isinstance(result, ParsedConversation):
        assert result.messages
        assert all(m.content.strip() and "\x00" not in m.content for m in result.messages)
        assert all(m.role in (MessageRole.USER, MessageRole.ASSISTANT) for m in result.messages)
    else:
        assert isinstance(result, SkippedConversation)
        assert result.reason
    assert item == before or item != item  # never changed (NaN is not equal to itself)


# --- from a parsed conversation to a chat -------------------------------------------------------
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def build(parsed: ParsedConversation) -> tuple[Any, Any]:
    ids = iter(uuid.UUID(int=i) for i in range(1, 10_000))
    return build_chat(
        parsed, project_id=uuid.uuid4(), user_id=uuid.uuid4(), now=NOW, new_id=lambda: next(ids)
    )


def test_a_chat_keeps_the_export_times_in_order_and_never_in_the_future() -> None:
    messages = (
        ParsedMessage(role=MessageRole.USER, content="q1", created_at=None),
        ParsedMessage(role=MessageRole.ASSISTANT, content="a1", created_at=at(T + 60),
                      model="chatgpt/gpt-4o"),
        ParsedMessage(role=MessageRole.USER, content="q2", created_at=at(T + 10)),  # earlier
        ParsedMessage(role=MessageRole.ASSISTANT, content="a2", created_at=NOW + timedelta(days=9)),
    )  # fmt: skip
    parsed = ParsedConversation(
        index=0, title="t", created_at=at(T), updated_at=NOW + timedelta(days=1), messages=messages
    )
    chat, built = build(parsed)
    assert [m.created_at for m in built] == [
        at(T), at(T + 60), at(T + 60) + timedelta(microseconds=1), NOW,
    ]  # fmt: skip
    assert (chat.created_at, chat.updated_at) == (at(T), NOW)
    assert all(m.chat_id == chat.id and m.status is MessageStatus.COMPLETE for m in built)
    imported = IMPORTED_PROVIDER
    assert [(m.model, m.provider) for m in built] == [
        (None, None), ("chatgpt/gpt-4o", imported), (None, None), (None, imported),
    ]  # fmt: skip
    assert all(m.usage.total == 0 and m.cost_usd == 0 for m in built)


def test_a_conversation_without_times_is_dated_now() -> None:
    parsed = ParsedConversation(
        index=0, title="t", messages=(ParsedMessage(role=MessageRole.USER, content="q"),)
    )
    chat, [only] = build(parsed)
    assert (chat.created_at, chat.updated_at, only.created_at) == (NOW, NOW, NOW)


def test_titles_are_trimmed_and_a_blank_one_comes_from_the_first_user_message() -> None:
    question = ParsedMessage(role=MessageRole.USER, content="  How do   tides work? ")
    answer = ParsedMessage(role=MessageRole.ASSISTANT, content="The moon.")
    assert import_title("  A\n title ", (question,)) == "A title"
    assert import_title(" ", (answer, question)) == "How do tides work?"
    assert import_title("", (answer,)) == "The moon."
    long = import_title("word " * 100, (question,))
    assert len(long) == TITLE_MAX
    assert long.endswith("…")
