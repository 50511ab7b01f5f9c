"""An audit (a helper's bug hunt) of the ChatGPT import (POST /api/chats/import) and of custom
instructions, on the real app (uvicorn, Postgres, Redis, a fake provider on loopback). Each test
asserts the correct behaviour. Six were findings, failing before their fixes: an oversized export
parsed whole before its count was checked, private instructions copied into a shared project's
chat, a body-limit 413 naming no limit, tool calls imported as replies, and two refusals of
instructions that named no field (the 400 above the schema's cap is now pinned as designed)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from whalli.adapters.embedded.stack import StackUrls

MODEL = "openai/gpt-4o-mini"
IMPORT = "/api/chats/import"
T = 1_700_000_000.0


# --- helpers ------------------------------------------------------------------------------------
def _msg(role: str, text: Any, at: Any = None, **metadata: Any) -> dict[str, Any]:
    return {
        "author": {"role": role},
        "create_time": at,
        "content": {"content_type": "text", "parts": [text]},
        "metadata": metadata,
    }


def _conv(texts: list[str], title: Any = "Imported", at: Any = T, **extra: Any) -> dict[str, Any]:
    """A linear conversation: user/assistant turns alternating, one second apart."""
    mapping: dict[str, Any] = {}
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        mapping[f"n{i}"] = {
            "message": _msg(role, text, None if at is None else T + i, model_slug="gpt-4o"),
            "parent": f"n{i - 1}" if i else None,
            "children": [f"n{i + 1}"] if i + 1 < len(texts) else [],
        }
    doc = {"title": title, "create_time": at, "update_time": at, "mapping": mapping}
    if texts:
        doc["current_node"] = f"n{len(texts) - 1}"
    return {**doc, **extra}


async def _import(chat: Chat, auth: dict[str, str], conversations: Any, **body: Any) -> Any:
    return await chat.client.post(
        IMPORT, json={"format": "chatgpt", "conversations": conversations, **body}, headers=auth
    )


async def _raw(chat: Chat, auth: dict[str, str], body: bytes) -> httpx.Response:
    headers = {**auth, "Content-Type": "application/json"}
    return await chat.client.post(IMPORT, content=body, headers=headers)


async def _chat_ids(chat: Chat, auth: dict[str, str], **params: str) -> set[str]:
    listed = await chat.client.get("/api/chats", params={"limit": "100", **params}, headers=auth)
    assert listed.status_code == 200, listed.text
    return {c["id"] for c in listed.json()["items"]}


async def _count_chats(chat: Chat, auth: dict[str, str]) -> int:
    """Every chat of the caller's personal project, page by page."""
    total, cursor = 0, None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = await chat.client.get("/api/chats", params=params, headers=auth)
        assert page.status_code == 200, page.text
        total += len(page.json()["items"])
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return total


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert body["detail"], body
    return body


async def _sent(chat: Chat, auth: dict[str, str], **body: Any) -> tuple[str, list[Any]]:
    """Start (a unique message), read the reply; the chat id and the provider's messages."""
    started = await chat.start(auth, model=MODEL, **{"message": f"Hi {uuid.uuid4()}", **body})
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started["chatId"], chat.provider.requests[-1].body["messages"]


# --- hostile documents --------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [50, 400, 900, 990, 10_000])
async def test_deeply_nested_json_is_refused_or_read_never_a_500(chat: Chat, depth: int) -> None:
    alice = await chat.world.register("alice")
    nested = b"[" * depth + b"]" * depth
    body = b'{"format":"chatgpt","conversations":[' + nested + b"]}"
    response = await _raw(chat, alice["auth"], body)
    assert response.status_code in (201, 400), (response.status_code, response.text[:300])
    if response.status_code == 400:
        assert "nested too deeply" in _problem(response, 400)["detail"]
    else:
        assert response.json()["skipped"][0]["reason"] == "not a conversation object"
    # nested inside a message's parts, too: the parser drops what is not text
    inner = b'{"author":{"role":"user"},"content":{"content_type":"text","parts":["hi",'
    doc = b'{"title":"t","mapping":{"a":{"message":' + inner + nested + b"]}}}}"
    response = await _raw(
        chat, alice["auth"], b'{"format":"chatgpt","conversations":[' + doc + b"]}"
    )
    assert response.status_code in (201, 400), (response.status_code, response.text[:300])
    if depth == 10_000:
        assert response.status_code == 400
        assert await _chat_ids(chat, alice["auth"]) == set()


async def test_a_parent_chain_of_100000_nodes_imports_in_linear_time(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    n = 100_000
    mapping: dict[str, Any] = {}
    for i in range(n):
        keep = i % 1000 == 999
        mapping[f"n{i}"] = {
            "message": _msg("user" if i % 2 else "assistant", f"m{i}", T + i) if keep else None,
            "parent": f"n{i - 1}" if i else None,
            "children": [f"n{i + 1}"] if i + 1 < n else [],
        }
    with_current = {"title": "long", "mapping": mapping, "current_node": f"n{n - 1}"}
    without = {"title": "long2", "mapping": mapping}  # the leaf is searched for
    async with asyncio.timeout(30):
        response = await _import(chat, alice["auth"], [with_current, without])
    assert response.status_code == 201, response.text[:300]
    assert [c["messages"] for c in response.json()["imported"]] == [100, 100]


async def test_cycles_self_parents_missing_children_and_duplicate_ids_are_read_safely(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    self_parent = {"mapping": {"a": {"message": _msg("user", "loop", T), "parent": "a",
                                     "children": ["a", "ghost"]}}, "current_node": "a"}  # fmt: skip
    cycle = {
        "title": "cycle",
        "mapping": {
            "a": {"message": _msg("user", "one", T), "parent": "b", "children": ["b"]},
            "b": {"message": _msg("assistant", "two", T + 1), "parent": "a", "children": ["a"]},
        },
    }  # no current node, and every node has a known child: no leaf
    dangling = {"mapping": {"x": {"message": _msg("user", "only", T), "children": ["nope"]}}}
    duplicated = (
        b'{"title":"dup","current_node":"a","mapping":{"a":{"message":'
        + json.dumps(_msg("user", "first")).encode()
        + b'},"a":{"message":'
        + json.dumps(_msg("user", "second")).encode()
        + b"}}}"
    )
    docs = b",".join(json.dumps(d).encode() for d in (self_parent, cycle, dangling))
    body = b'{"format":"chatgpt","conversations":[' + docs + b"," + duplicated + b"]}"
    response = await _raw(chat, alice["auth"], body)
    assert response.status_code == 201, response.text
    result = response.json()
    assert [c["messages"] for c in result["imported"]] == [1, 1, 1]
    assert [s["index"] for s in result["skipped"]] == [1]
    dup = await chat.client.get(
        f"/api/chats/{result['imported'][2]['chatId']}", headers=alice["auth"]
    )
    assert [m["content"] for m in dup.json()["messages"]] == ["second"]


async def test_nul_characters_are_dropped_from_text_titles_and_models(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    conv = _conv(["q\x00uestion", "an\x00swer"], title="Ti\x00tle")
    conv["mapping"]["n1"]["message"]["metadata"]["model_slug"] = "gpt\x00-4o"
    response = await _import(chat, alice["auth"], [conv])
    assert response.status_code == 201, response.text
    chat_id = response.json()["imported"][0]["chatId"]
    shown = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()
    assert shown["title"] == "Title"
    assert [m["content"] for m in shown["messages"]] == ["question", "answer"]
    assert shown["messages"][1]["model"] == "chatgpt/gpt-4o"


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"x\\ud800\\u0041"])
@pytest.mark.parametrize("where", ["title", "text"])
async def test_a_lone_surrogate_is_a_400_that_writes_nothing(
    chat: Chat, escape: bytes, where: str
) -> None:
    alice = await chat.world.register("alice")
    conv = json.dumps(_conv(["PLACE-TEXT", "answer"], title="PLACE-TITLE")).encode()
    conv = conv.replace(b"PLACE-" + where.upper().encode(), escape)
    response = await _raw(
        chat, alice["auth"], b'{"format":"chatgpt","conversations":[' + conv + b"]}"
    )
    assert "surrogate" in _problem(response, 400)["detail"]
    assert await _chat_ids(chat, alice["auth"]) == set()


async def test_non_string_titles_are_made_from_the_first_user_message(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    titles: list[Any] = [None, 42, ["a"], {"x": 1}, True, "   "]
    response = await _import(chat, alice["auth"], [_conv([f"Question {i}", "a"], title=t)
                                                    for i, t in enumerate(titles)])  # fmt: skip
    assert response.status_code == 201, response.text
    assert [c["title"] for c in response.json()["imported"]] == [
        f"Question {i}" for i in range(len(titles))
    ]


async def test_times_are_never_in_the_future_before_1970_or_out_of_range(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    odd = [b"1e20", b"-5", b"-1e20", b"253402300800", b"99999999999999999999999",
           b"4102444800", b"0", b"1e-300", b'"1700000000"', b"true", b"1.7e9"]  # fmt: skip
    convs = []
    for value in odd:
        conv = json.dumps(_conv(["q", "a"], at=None)).encode()
        conv = conv.replace(b'"create_time": null', b'"create_time": ' + value)
        convs.append(conv)
    body = b'{"format":"chatgpt","conversations":[' + b",".join(convs) + b"]}"
    response = await _raw(chat, alice["auth"], body)
    assert response.status_code == 201, response.text
    after = datetime.now(UTC) + timedelta(seconds=5)
    for imported in response.json()["imported"]:
        shown = await chat.client.get(f"/api/chats/{imported['chatId']}", headers=alice["auth"])
        body_ = shown.json()
        times = [body_["createdAt"], body_["updatedAt"]] + [
            m["createdAt"] for m in body_["messages"]
        ]
        for at in map(datetime.fromisoformat, times):
            assert datetime(1970, 1, 1, tzinfo=UTC) <= at <= after, (imported, times)
    assert len(response.json()["imported"]) == len(odd)
    assert before <= after
    # a number beyond a float (valid JSON) is the decoder's clear 400, not a 500
    body = body.replace(b"1e20", b"1e400", 1)
    assert "out of range" in _problem(await _raw(chat, alice["auth"], body), 400)["detail"]


async def test_500_conversations_of_20_messages_is_the_boundary_all_or_nothing(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    export = [_conv([f"q{c}-{i}" for i in range(20)], title=f"c{c}") for c in range(500)]
    async with asyncio.timeout(60):
        ok = await _import(chat, alice["auth"], export)
    assert ok.status_code == 201, ok.text[:300]
    assert len(ok.json()["imported"]) == 500
    assert await _count_chats(chat, alice["auth"]) == 500

    one_more_message = [*export[:-1], _conv([f"q{i}" for i in range(21)])]
    refused = _problem(await _import(chat, bob["auth"], one_more_message), 413)
    assert refused["limit"] == 10_000
    assert "10000" in refused["detail"]
    one_more_chat = [*[_conv(["q", "a"]) for _ in range(500)], _conv(["q"])]
    refused = _problem(await _import(chat, bob["auth"], one_more_chat), 413)
    assert refused["limit"] == 500
    assert await _count_chats(chat, bob["auth"]) == 0


async def test_an_export_over_500_conversations_is_refused_before_it_is_parsed(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whalli.domain.model import chatgpt_export

    alice = await chat.world.register("alice")
    calls = 0
    original = chatgpt_export.parse_conversation

    def counting(index: int, item: object) -> Any:
        nonlocal calls
        calls += 1
        return original(index, item)

    monkeypatch.setattr(chatgpt_export, "parse_conversation", counting)
    body = b'{"format":"chatgpt","conversations":[' + b",".join([b"[]"] * 200_000) + b"]}"
    refused = _problem(await _raw(chat, alice["auth"], body), 413)
    assert refused["limit"] == 500
    assert calls <= 501, calls


async def test_a_message_over_the_limit_is_a_422_naming_its_conversation(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    export = [_conv(["fine", "ok"]), _conv(["y" * 200_001, "a"])]
    refused = _problem(await _import(chat, alice["auth"], export), 422)
    assert refused["index"] == 1
    assert await _chat_ids(chat, alice["auth"]) == set()


async def test_a_body_near_the_limit_is_read_and_over_it_is_a_413_problem(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    # ~19 MB: 100 messages of 190,000 characters, each under MESSAGE_MAX (and over the app's
    # default 10 MB body limit)
    big = [_conv(["z" * 190_000 for _ in range(10)]) for _ in range(10)]
    async with asyncio.timeout(60):
        ok = await _import(chat, alice["auth"], big)
    assert ok.status_code == 201, ok.text[:300]
    too_big = [_conv(["z" * 190_000 for _ in range(10)]) for _ in range(12)]
    refused = _problem(await _import(chat, alice["auth"], too_big), 413)
    assert set(refused) >= {"type", "title", "status", "detail", "code", "instance"}
    assert refused["instance"] == IMPORT
    assert await _count_chats(chat, alice["auth"]) == 10


async def test_the_body_limit_413_names_the_limit(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    too_big = [_conv(["z" * 190_000 for _ in range(10)]) for _ in range(12)]
    refused = _problem(await _import(chat, alice["auth"], too_big), 413)
    assert any(s in refused["detail"] for s in ("20971520", "20 MiB", "20 MB")), refused


@pytest.mark.parametrize("bad", [b"\xed\xa0\x80", b"\xff", b"\xc3"])
async def test_a_body_that_is_not_utf8_is_a_400_that_writes_nothing(chat: Chat, bad: bytes) -> None:
    alice = await chat.world.register("alice")
    conv = json.dumps(_conv(["PLACE", "a"])).encode().replace(b"PLACE", b"x" + bad + b"y")
    response = await _raw(
        chat, alice["auth"], b'{"format":"chatgpt","conversations":[' + conv + b"]}"
    )
    assert "UTF-8" in _problem(response, 400)["detail"]
    assert await _chat_ids(chat, alice["auth"]) == set()


async def test_messages_clamped_to_now_keep_the_order_shown(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    future = _conv([f"turn {i}" for i in range(60)])
    for i, node in enumerate(future["mapping"].values()):
        node["message"]["create_time"] = 4_102_444_800 - i  # 2100, and going backwards
    untimed = _conv([f"turn {i}" for i in range(60)], at=None)
    made = await _import(chat, alice["auth"], [future, untimed])
    assert made.status_code == 201, made.text
    for imported in made.json()["imported"]:
        shown = await chat.client.get(f"/api/chats/{imported['chatId']}", headers=alice["auth"])
        messages = shown.json()["messages"]
        assert [m["content"] for m in messages] == [f"turn {i}" for i in range(60)]
        assert datetime.fromisoformat(messages[-1]["createdAt"]) <= datetime.now(UTC)


async def test_concurrent_imports_by_one_user_all_land(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    exports = [[_conv([f"q{k}-{c}", "a"]) for c in range(5)] for k in range(6)]
    async with asyncio.timeout(30):
        answers = await asyncio.gather(*(_import(chat, alice["auth"], e) for e in exports))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    ids = {c["chatId"] for a in answers for c in a.json()["imported"]}
    assert len(ids) == 30
    assert await _chat_ids(chat, alice["auth"]) == ids


async def test_malformed_shapes_are_skipped_never_a_500(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    good = _msg("user", "ok", T)
    weird: list[Any] = [
        None, 1, "x", [], {}, {"mapping": []}, {"mapping": {"a": 5}, "current_node": "a"},
        {"mapping": {"a": {"message": good}}, "current_node": 7},
        {"mapping": {"a": {"message": {**good, "author": "user"}}}},
        {"mapping": {"a": {"message": {**good, "content": "text"}}}},
        {"mapping": {"a": {"message": {**good, "metadata": []}}}},
        {"mapping": {"a": {"message": {**good, "content": {"content_type": "text",
                                                             "parts": "abc"}}}}},
        {"mapping": {"a": {"message": {**good, "content": {"content_type": "code",
                                                             "text": 5, "language": []}}}}},
        {"mapping": {"a": {"message": {**good, "content": {"content_type": "text",
                                                             "parts": [{"x": 1}, None, 3]}}}}},
        {"mapping": {"a": {"message": good, "parent": ["b"], "children": "b"}},
         "current_node": "a", "title": "t" * 100_000},
        {"mapping": {"a": {"message": {**good, "metadata": {"model_slug": "m" * 10_000}}}}},
        {"mapping": {"a": {"message": {**good, "author": {"role": "assistant"},
                                       "metadata": {"model_slug": "s" * 10_000}}}}},
    ]  # fmt: skip
    response = await _import(chat, alice["auth"], weird)
    assert response.status_code == 201, response.text[:500]
    result = response.json()
    # read: an unknown current node (the leaf is found), metadata not an object, a parent
    # not a string, and the two long model slugs
    assert [c["messages"] for c in result["imported"]] == [1] * 5
    assert len(result["imported"]) + len(result["skipped"]) == len(weird)
    long_title = result["imported"][2]["title"]
    assert len(long_title) == 120
    assert long_title.endswith("…")
    last = result["imported"][4]["chatId"]
    shown = (await chat.client.get(f"/api/chats/{last}", headers=alice["auth"])).json()
    assert shown["messages"][0]["model"] == ("chatgpt/" + "s" * 10_000)[:200]


async def test_assistant_turns_addressed_to_a_tool_are_not_imported(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    conv = _conv(["Draw a cat", "TOOL-CALL", "TOOL-RESULT", "Here is your cat."])
    nodes = conv["mapping"]
    nodes["n1"]["message"]["recipient"] = "dalle.text2im"
    nodes["n1"]["message"]["content"]["parts"] = ['{"prompt": "a cat", "size": "1024x1024"}']
    nodes["n2"]["message"]["author"] = {"role": "tool", "name": "dalle.text2im"}
    for node in ("n0", "n3"):
        nodes[node]["message"]["recipient"] = "all"
    made = await _import(chat, alice["auth"], [conv])
    assert made.status_code == 201, made.text
    chat_id = made.json()["imported"][0]["chatId"]
    shown = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()
    assert [m["content"] for m in shown["messages"]] == ["Draw a cat", "Here is your cat."]


# --- projects, membership, search ---------------------------------------------------------------
async def test_import_into_projects_follows_roles_and_search_follows_membership(
    chat: Chat,
) -> None:
    owner, viewer = await chat.world.register("owner"), await chat.world.register("viewer")
    editor, outsider = await chat.world.register("editor"), await chat.world.register("outsider")
    project_id = await team_project(chat, owner, viewer, "viewer")
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": editor["email"], "role": "editor"}, headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text
    word = f"quokka{uuid.uuid4().hex[:10]}"
    doc = [_conv([f"about {word}", "sure"])]

    _problem(await _import(chat, viewer["auth"], doc, projectId=project_id), 403)
    _problem(await _import(chat, outsider["auth"], doc, projectId=project_id), 404)
    outsider_personal = (await _import(chat, outsider["auth"], [_conv(["mine"])])).json()
    personal = outsider_personal["imported"][0]["chatId"]
    other_project = await chat.client.get(f"/api/chats/{personal}", headers=outsider["auth"])
    _problem(
        await _import(chat, owner["auth"], doc, projectId=other_project.json()["projectId"]), 404
    )
    _problem(await _import(chat, owner["auth"], doc, projectId=str(uuid.uuid4())), 404)

    made = await _import(chat, editor["auth"], doc, projectId=project_id)
    assert made.status_code == 201, made.text
    chat_id = made.json()["imported"][0]["chatId"]
    for member in (owner, viewer, editor):
        hits = await chat.client.get(f"/api/chats/search?q={word}", headers=member["auth"])
        assert [h["chatId"] for h in hits.json()] == [chat_id], hits.text
    hits = await chat.client.get(f"/api/chats/search?q={word}", headers=outsider["auth"])
    assert hits.json() == []
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{viewer['user']['id']}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text
    hits = await chat.client.get(f"/api/chats/search?q={word}", headers=viewer["auth"])
    assert hits.json() == []


# --- rate limits and model gates ----------------------------------------------------------------
async def test_imports_count_against_the_users_rate_limit(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="4") as chat:
        alice = await chat.world.register("alice")
        codes = [(await _import(chat, alice["auth"], [_conv(["q"])])).status_code for _ in range(6)]
        assert codes[0] == 201, codes
        assert 429 in codes, codes


async def test_an_imported_chat_continues_with_a_real_model_and_its_label_is_not_one(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    made = await _import(chat, alice["auth"], [_conv(["Plan a trip", "Day 1: Alfama."])])
    chat_id = made.json()["imported"][0]["chatId"]

    # regenerating the imported reply with its own (label) model: a 422 naming it, asking
    # for a model
    regen = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=alice["auth"]
    )
    refused = _problem(regen, 422)
    assert "chatgpt/gpt-4o" in refused["detail"]
    assert refused["field"] == "model"
    label = await chat.client.post(
        "/api/chat/start", json={"model": "chatgpt/gpt-4o", "message": "hi", "chatId": chat_id},
        headers=alice["auth"],
    )  # fmt: skip
    _problem(label, 404)

    # continuing it with a catalog model sends the imported history
    _, sent = await _sent(chat, alice["auth"], chatId=chat_id, message="And food?")
    assert [(m["role"], m["content"]) for m in sent[:2]] == [
        ("user", "Plan a trip"), ("assistant", "Day 1: Alfama."),
    ]  # fmt: skip
    regen = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id, "model": MODEL}, headers=alice["auth"]
    )
    assert regen.status_code == 201, regen.text
    await chat.events(regen.json()["sessionId"])


async def test_imported_replies_record_no_usage(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    made = await _import(chat, alice["auth"], [_conv(["q", "a", "q2", "a2"])])
    assert made.status_code == 201, made.text
    chat_id = made.json()["imported"][0]["chatId"]
    shown = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()
    replies = [m for m in shown["messages"] if m["role"] == "assistant"]
    assert {(m["provider"], m["status"], m["costUsd"]) for m in replies} == {
        ("imported", "complete", 0.0)
    }
    usage = await chat.client.get("/api/usage", headers=alice["auth"])
    assert usage.status_code == 200, usage.text
    assert "imported" not in usage.text


# --- custom instructions ------------------------------------------------------------------------
async def test_custom_instructions_limit_counts_characters_not_bytes(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    for ch in ("é", "😀", "中"):
        ok = await chat.client.patch(
            "/api/auth/me", json={"customInstructions": f"  {ch * 20_000}\n"}, headers=auth
        )
        assert ok.status_code == 200, ok.text[:300]
        assert ok.json()["customInstructions"] == ch * 20_000
        refused = await chat.client.patch(
            "/api/auth/me", json={"customInstructions": ch * 20_001}, headers=auth
        )
        assert _problem(refused, 422)["field"] == "customInstructions"
    me = await chat.client.get("/api/auth/me", headers=auth)
    assert me.json()["customInstructions"] == "中" * 20_000


async def test_too_long_instructions_are_refused_naming_the_field_at_any_length(
    chat: Chat,
) -> None:
    """The project's pattern: a generous schema cap (100,000) stops absurd input before any
    work (400), the use case applies the rule (20,000: 422 with the limit); both name the
    field, and neither stores anything."""
    alice = await chat.world.register("alice")
    refused = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "x" * 20_001}, headers=alice["auth"]
    )
    problem = _problem(refused, 422)
    assert (problem["field"], problem["limit"]) == ("customInstructions", 20_000)
    absurd = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "x" * 100_001}, headers=alice["auth"]
    )
    assert "customInstructions" in _problem(absurd, 400)["errors"][0]["key"]
    me = await chat.client.get("/api/auth/me", headers=alice["auth"])
    assert me.json()["customInstructions"] is None


async def test_custom_instructions_with_a_nul_are_a_4xx_and_change_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    await chat.client.patch("/api/auth/me", json={"customInstructions": "Be kind."}, headers=auth)
    response = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "Be\x00 rude."}, headers=auth
    )
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    me = await chat.client.get("/api/auth/me", headers=auth)
    assert me.json()["customInstructions"] == "Be kind."


async def test_custom_instructions_with_a_nul_name_the_field(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": "Be\x00 rude."}, headers=alice["auth"]
    )
    assert _problem(response, 422).get("field") == "customInstructions", response.text


@pytest.mark.parametrize("clear", [None, "", "   \n\t "])
async def test_null_or_blank_clears_the_instructions(chat: Chat, clear: str | None) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    await chat.client.patch("/api/auth/me", json={"customInstructions": "Be kind."}, headers=auth)
    cleared = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": clear}, headers=auth
    )
    assert (cleared.status_code, cleared.json()["customInstructions"]) == (200, None)
    kept = await chat.client.patch("/api/auth/me", json={"name": "Alice"}, headers=auth)
    assert kept.json()["customInstructions"] is None
    _, sent = await _sent(chat, auth)
    assert [m["role"] for m in sent] == ["user"]


async def test_a_name_change_keeps_the_instructions(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    await chat.client.patch("/api/auth/me", json={"customInstructions": "Be kind."}, headers=auth)
    renamed = await chat.client.patch("/api/auth/me", json={"name": "Al"}, headers=auth)
    assert renamed.json()["customInstructions"] == "Be kind."
    _, sent = await _sent(chat, auth)
    assert sent[0] == {"role": "system", "content": "Be kind."}


async def test_instructions_stay_out_of_lists_search_logs_and_v1_completions(
    chat: Chat, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = f"SECRET-INSTRUCTION-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    patched = await chat.client.patch(
        "/api/auth/me", json={"customInstructions": secret}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    chat_id, sent = await _sent(chat, auth)
    assert sent[0] == {"role": "system", "content": secret}
    _, opted_out = await _sent(chat, auth, systemPrompt="")
    assert [m["role"] for m in opted_out] == ["user"]

    listed = await chat.client.get("/api/chats", headers=auth)
    assert chat_id in listed.text
    assert secret not in listed.text
    found = await chat.client.get("/api/chats/search?q=SECRET-INSTRUCTION", headers=auth)
    assert found.status_code == 200
    assert secret not in found.text
    _, blank = await _sent(chat, auth, systemPrompt="   ")
    assert [m["role"] for m in blank] == ["user"]

    key = await chat.client.post("/api/keys", json={"name": "ci"}, headers=auth)
    v1 = await chat.client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hello v1"}]},
        headers={"Authorization": f"Bearer {key.json()['secret']}"},
    )
    assert v1.status_code == 200, v1.text
    assert [m["role"] for m in chat.provider.requests[-1].body["messages"]] == ["user"]
    assert secret not in json.dumps(chat.provider.requests[-1].body)

    # a refused change logs nothing of the text either
    await chat.client.patch("/api/auth/me", json={"customInstructions": secret * 400}, headers=auth)
    captured = capsys.readouterr()
    assert secret not in caplog.text
    assert secret not in captured.out + captured.err


async def test_custom_instructions_are_not_shown_to_other_project_members(chat: Chat) -> None:
    owner, viewer = await chat.world.register("owner"), await chat.world.register("viewer")
    project_id = await team_project(chat, owner, viewer, "viewer")
    private = f"I am pregnant; my doctor is Dr. X {uuid.uuid4().hex[:6]}"
    await chat.client.patch(
        "/api/auth/me", json={"customInstructions": private}, headers=owner["auth"]
    )
    chat_id, sent = await _sent(chat, owner["auth"], projectId=project_id)
    # a shared project's chat never gets them (its system prompt is every member's to read)
    assert all(m["role"] != "system" for m in sent), sent
    seen = await chat.client.get(f"/api/chats/{chat_id}", headers=viewer["auth"])
    assert seen.status_code == 200, seen.text
    assert private not in seen.text


async def test_a_disabled_account_starts_nothing_and_its_key_is_refused(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    await chat.client.patch("/api/auth/me", json={"customInstructions": "Be kind."}, headers=auth)
    key = (await chat.client.post("/api/keys", json={"name": "ci"}, headers=auth)).json()
    disabled = await chat.client.patch(
        f"/api/admin/users/{alice['user']['id']}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text
    assert "customInstructions" not in disabled.text or "Be kind." not in disabled.text
    for headers in (auth, {"X-API-Key": key["secret"]}):
        refused = await chat.client.post(
            "/api/chat/start", json={"model": MODEL, "message": "hi"}, headers=headers
        )
        assert refused.status_code in (401, 403), refused.text
        me = await chat.client.get("/api/auth/me", headers=headers)
        assert me.status_code in (401, 403), me.text
        imported = await _import(chat, headers, [_conv(["q"])])
        assert imported.status_code in (401, 403), imported.text
