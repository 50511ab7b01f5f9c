"""Hunt S21 of conversations, end to end through the real app (Postgres, Redis, S3) with a
loopback OpenAI provider: the chat list's cursor pagination (chats sharing one timestamp, chats
created and deleted between pages, forged cursors), full-text search with odd syntax and after
leaving a project, PATCH and DELETE racing each other, exports, forks, and the context sent
with a reply (trimmed oldest-first to the model's window, the system prompt kept)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.support.fake_providers import RecordedRequest
from tests.unit.test_chatgpt_export import T, conversation, message
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.services.chat.context import estimate_tokens

PROBLEM = "application/problem+json"
SHIPPED = Path(__file__).parents[3] / "catalog" / "models.toml"
WINDOW = 2000  # the small test model's context window
RESERVE = min(1024, WINDOW // 4)  # what the context keeps free for the reply (ContextLimits)
OVERHEAD = 4  # MESSAGE_OVERHEAD_TOKENS


def _catalog(tmp_path: Path, tiny: str) -> str:
    extra = f"""

[[model]]
id = "{tiny}"
provider = "openai"
upstream = "gpt-s21-tiny"
min_plan = "free"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = {WINDOW}
max_output_tokens = 1500
"""
    path = tmp_path / "models.toml"
    path.write_text(SHIPPED.read_text() + extra)
    return str(path)


class Hunt:
    def __init__(self, chat: Chat, tiny: str) -> None:
        self.chat, self.tiny = chat, tiny

    @property
    def client(self) -> Any:
        return self.chat.client


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[Hunt]:
    tiny = f"openai/s21c-{unique}-tiny"
    env = {"WHALLI_CATALOG_PATH": _catalog(tmp_path, tiny), "WHALLI_CHAT_TITLES": "off"}
    async with chat_app(stack_urls, unique, **env) as chat:
        yield Hunt(chat, tiny)


def _problem(response: Any, status: int | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


async def _import(
    hunt: Hunt, auth: dict[str, str], conversations: list[dict[str, Any]], **extra: Any
) -> list[str]:
    response = await hunt.client.post(
        "/api/chats/import",
        json={"format": "chatgpt", "conversations": conversations, **extra},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    assert response.json()["skipped"] == [], response.text
    return [c["chatId"] for c in response.json()["imported"]]


def _talk(turns: list[str], title: str, at: float = T, updated: float | None = None) -> Any:
    """A ChatGPT conversation alternating user and assistant turns (the first a user's)."""
    nodes: list[tuple[str, str | None, dict[str, Any] | None]] = [("root", None, None)]
    for i, text in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        nodes.append((f"n{i}", nodes[-1][0], message(role, text, at=at + i)))
    doc = conversation(nodes, current=nodes[-1][0], title=title)
    doc["create_time"] = at
    doc["update_time"] = at + len(turns) if updated is None else updated
    return doc


async def _all_pages(
    hunt: Hunt, auth: dict[str, str], limit: int, query: str = ""
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(100):
        url = f"/api/chats?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await hunt.client.get(url, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([c["id"] for c in body["items"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
    raise AssertionError("the pages never ended")


async def _echo(hunt: Hunt, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    """A dev/echo reply, read to the end."""
    started = await hunt.chat.start(auth, model="dev/echo", **body)
    events = await hunt.chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started


async def _search(hunt: Hunt, auth: dict[str, str], q: str) -> list[dict[str, Any]]:
    response = await hunt.client.get("/api/chats/search", params={"q": q}, headers=auth)
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


def _word() -> str:
    return "qz" + uuid.uuid4().hex[:12]


# === the list's pages ============================================================================
async def test_s21a_paging_chats_that_share_one_timestamp_neither_repeats_nor_skips(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    same = T + 5000.123456  # every chat updated at the same microsecond
    docs = [_talk(["q", "a"], f"same {i}", updated=same) for i in range(7)]
    ids = await _import(hunt, ada["auth"], docs)
    for limit in (1, 2, 3, 7, 100):
        pages = await _all_pages(hunt, ada["auth"], limit)
        seen = [i for page in pages for i in page]
        assert sorted(seen) == sorted(ids), limit
        # newest first, then by id (descending): a stable order for equal timestamps
        assert seen == sorted(ids, key=uuid.UUID, reverse=True), limit
        assert all(len(p) == limit for p in pages[:-1]), (limit, pages)


async def test_s21a_chats_created_renamed_or_deleted_between_pages_shift_none_of_the_others(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    docs = [_talk(["q", "a"], f"chat {i}", at=T + i * 100) for i in range(8)]
    ids = await _import(hunt, ada["auth"], docs)
    newest_first = list(reversed(ids))
    first = await hunt.client.get("/api/chats?limit=3", headers=ada["auth"])
    assert [c["id"] for c in first.json()["items"]] == newest_first[:3]
    cursor = first.json()["nextCursor"]

    # between pages: the page's last chat (the cursor's own) deleted, a new chat started, a
    # chat already seen renamed (it moves to the top), one not yet seen deleted
    deleted = await hunt.client.delete(f"/api/chats/{newest_first[2]}", headers=ada["auth"])
    assert deleted.status_code == 204, deleted.text
    await _echo(hunt, ada["auth"], message="a new chat")
    renamed = await hunt.client.patch(
        f"/api/chats/{newest_first[0]}", json={"title": "renamed"}, headers=ada["auth"]
    )
    assert renamed.status_code == 200, renamed.text
    gone = await hunt.client.delete(f"/api/chats/{newest_first[5]}", headers=ada["auth"])
    assert gone.status_code == 204, gone.text

    rest: list[str] = []
    for _ in range(10):
        page = await hunt.client.get(f"/api/chats?limit=2&cursor={cursor}", headers=ada["auth"])
        assert page.status_code == 200, page.text
        rest += [c["id"] for c in page.json()["items"]]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            break
    assert rest == [newest_first[i] for i in (3, 4, 6, 7)]


def _cursor(micros: int, chat_id: uuid.UUID) -> str:
    raw = struct.pack(">q16s", micros, chat_id.bytes)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_s21a_forged_cursors_are_a_4xx_problem_or_a_page_of_the_callers_own_chats(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    eve = await hunt.chat.world.register("eve")
    ada_ids = await _import(hunt, ada["auth"], [_talk(["q", "a"], f"ada {i}") for i in range(3)])
    eve_ids = set(await _import(hunt, eve["auth"], [_talk(["q", "a"], "eve")]))
    valid = _cursor(0, uuid.UUID(ada_ids[0]))
    refused = [
        valid + "=",  # padding: another spelling of the same bytes
        valid + "A",  # too long
        valid[:-1],  # truncated
        _cursor(-1, uuid.UUID(ada_ids[0])).replace("_", "/"),  # the standard alphabet
        "%FF%FE",
        "%00",
        "%ED%A0%80",
        "x" * 5000,
        "",
        " ",
        _cursor(2**63 - 1, uuid.uuid4()),  # beyond any date
        _cursor(-(2**63), uuid.uuid4()),
    ]
    for forged in refused:
        response = await hunt.client.get(f"/api/chats?cursor={forged}", headers=ada["auth"])
        if forged.strip() == "" and response.status_code == 200:
            continue  # an empty cursor may mean the first page
        _problem(response)
    # well-formed positions anywhere in time only ever list the caller's chats
    for micros in (0, -(10**15), 253402300799 * 10**6, 2**40):
        for chat_id in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), *map(uuid.UUID, eve_ids)):
            response = await hunt.client.get(
                f"/api/chats?cursor={_cursor(micros, chat_id)}", headers=ada["auth"]
            )
            assert response.status_code == 200, (micros, response.text)
            listed = {c["id"] for c in response.json()["items"]}
            assert listed <= set(ada_ids), listed


# === search =====================================================================================
@pytest.mark.parametrize(
    "template",
    [
        '"{w}"',
        "{w}:*",
        "{w} & !",
        "{w} | ",
        "({w})",
        "{w}\\",
        "\\{w}",
        "'{w}'",
        "{w} <-> ",
        "<{w}>",
        "{w}!",
        "  {w}  ",
        "{w.upper()}",
        "{w} OR nothingmatchesthis",
    ],
)
async def test_s21a_a_word_wrapped_in_search_syntax_still_finds_its_chat(
    hunt: Hunt, template: str
) -> None:
    ada = await hunt.chat.world.register("ada")
    w = _word()
    [chat_id] = await _import(hunt, ada["auth"], [_talk([f"about {w} today", "ok"], "t")])
    q = template.replace("{w.upper()}", w.upper()).replace("{w}", w)
    hits = await _search(hunt, ada["auth"], q)
    assert [h["chatId"] for h in hits] == [chat_id], (q, hits)


async def test_s21a_odd_search_queries_answer_a_list_of_the_callers_chats_never_a_500(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    eve = await hunt.chat.world.register("eve")
    await _import(hunt, ada["auth"], [_talk(["the and of a", "ok"], "ada")])
    eve_ids = set(await _import(hunt, eve["auth"], [_talk(["the and of a", "ok"], "eve")]))
    odd = [
        "the and of",
        "-zzzz",
        "-",
        "!",
        "&|!:*()<>",
        "'\"'\"'",
        "\\\\\\",
        "a" * 500,
        "ab " * 166,
        "- " * 250,
        '"' * 500,
        "(" * 250 + ")" * 250,
        "!(" * 250,
        "東京 タワー",
        "مرحبا",
        "🙂",
        "a:*B & c:A",
        "\t\n\r",
    ]
    for q in odd:
        hits = await _search(hunt, ada["auth"], q)
        assert not {h["chatId"] for h in hits} & eve_ids, q
    too_long = await hunt.client.get(
        "/api/chats/search", params={"q": "a" * 501}, headers=ada["auth"]
    )
    _problem(too_long, 422 if too_long.status_code == 422 else 400)


async def test_s21a_a_member_who_left_a_project_no_longer_finds_its_chats(hunt: Hunt) -> None:
    owner = await hunt.chat.world.register("owner")
    bob = await hunt.chat.world.register("bob")
    project_id = await team_project(hunt.chat, owner, bob, "editor")
    w = _word()
    [chat_id] = await _import(
        hunt, owner["auth"], [_talk([f"{w} plan", "ok"], f"{w} title")], projectId=project_id
    )
    assert [h["chatId"] for h in await _search(hunt, bob["auth"], w)] == [chat_id]
    left = await hunt.client.delete(
        f"/api/projects/{project_id}/members/{bob['user']['id']}", headers=bob["auth"]
    )
    assert left.status_code == 204, left.text
    assert await _search(hunt, bob["auth"], w) == []
    assert await _search(hunt, bob["auth"], f"-{_word()}") == []  # "everything but": nothing
    read = await hunt.client.get(f"/api/chats/{chat_id}", headers=bob["auth"])
    _problem(read, 404)


async def test_s21a_search_finds_archived_chats_and_says_so(hunt: Hunt) -> None:
    ada = await hunt.chat.world.register("ada")
    w = _word()
    [chat_id] = await _import(hunt, ada["auth"], [_talk([f"x {w} y", "ok"], "t")])
    archived = await hunt.client.patch(
        f"/api/chats/{chat_id}", json={"archived": True}, headers=ada["auth"]
    )
    assert archived.status_code == 200, archived.text
    [hit] = await _search(hunt, ada["auth"], w)
    assert hit["chatId"] == chat_id
    assert hit["archived"] is True
    assert w in hit["snippet"]


# === PATCH and DELETE racing ====================================================================
async def test_s21a_a_patch_racing_a_delete_is_a_200_or_a_404_and_the_chat_stays_gone(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    ids = await _import(hunt, ada["auth"], [_talk(["q", "a"], f"c{i}") for i in range(6)])
    for chat_id in ids:
        url = f"/api/chats/{chat_id}"
        patched, deleted, again = await asyncio.gather(
            hunt.client.patch(url, json={"title": "new", "pinned": True}, headers=ada["auth"]),
            hunt.client.delete(url, headers=ada["auth"]),
            hunt.client.delete(url, headers=ada["auth"]),
        )
        assert patched.status_code in (200, 404), patched.text
        assert sorted([deleted.status_code, again.status_code]) == [204, 404], (
            deleted.text,
            again.text,
        )
        _problem(await hunt.client.get(url, headers=ada["auth"]), 404)
    listed = await hunt.client.get("/api/chats", headers=ada["auth"])
    assert listed.json()["items"] == []


async def test_s21a_two_patches_at_once_both_apply(hunt: Hunt) -> None:
    ada = await hunt.chat.world.register("ada")
    ids = await _import(hunt, ada["auth"], [_talk(["q", "a"], f"c{i}") for i in range(4)])
    for chat_id in ids:
        url = f"/api/chats/{chat_id}"
        a, b, c = await asyncio.gather(
            hunt.client.patch(url, json={"title": "renamed"}, headers=ada["auth"]),
            hunt.client.patch(url, json={"systemPrompt": "be brief"}, headers=ada["auth"]),
            hunt.client.patch(url, json={"pinned": True}, headers=ada["auth"]),
        )
        assert (a.status_code, b.status_code, c.status_code) == (200, 200, 200)
        read = (await hunt.client.get(url, headers=ada["auth"])).json()
        assert (read["title"], read["systemPrompt"], read["pinned"]) == (
            "renamed",
            "be brief",
            True,
        )


async def test_s21a_a_stranger_gets_404_on_every_chat_route_and_changes_nothing(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    eve = await hunt.chat.world.register("eve")
    [chat_id] = await _import(hunt, ada["auth"], [_talk(["q", "a"], "mine")])
    url = f"/api/chats/{chat_id}"
    for response in (
        await hunt.client.get(url, headers=eve["auth"]),
        await hunt.client.get(f"{url}/export", headers=eve["auth"]),
        await hunt.client.get(f"{url}/export?format=json", headers=eve["auth"]),
        await hunt.client.patch(url, json={"title": "x"}, headers=eve["auth"]),
        await hunt.client.patch(url, json={}, headers=eve["auth"]),
        await hunt.client.delete(url, headers=eve["auth"]),
        await hunt.client.post(f"{url}/fork", json={}, headers=eve["auth"]),
    ):
        _problem(response, 404)
    read = await hunt.client.get(url, headers=ada["auth"])
    assert read.status_code == 200
    assert read.json()["title"] == "mine"


# === exports and forks ==========================================================================
ODD = 'Quote " back \\ slash\n\n# Heading\n```\nfence\u2028line\u0007bell </script> \U0001f600'


async def test_s21a_exports_of_odd_text_are_valid_json_and_markdown(hunt: Hunt) -> None:
    ada = await hunt.chat.world.register("ada")
    [chat_id] = await _import(hunt, ada["auth"], [_talk([ODD, ODD + " reply"], "t")])
    renamed = await hunt.client.patch(
        f"/api/chats/{chat_id}", json={"title": 'a/b\\c "d" ..', "systemPrompt": ODD},
        headers=ada["auth"],
    )  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    read = (await hunt.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()
    as_json = await hunt.client.get(f"/api/chats/{chat_id}/export?format=json", headers=ada["auth"])
    assert as_json.status_code == 200, as_json.text
    exported = json.loads(as_json.content)
    assert exported["messages"][0]["content"] == ODD
    assert exported["systemPrompt"] == ODD
    assert exported == read
    assert "attachment" in as_json.headers["content-disposition"]
    as_md = await hunt.client.get(f"/api/chats/{chat_id}/export", headers=ada["auth"])
    assert as_md.status_code == 200, as_md.text
    text = as_md.content.decode("utf-8")
    assert ODD in text
    assert f"{ODD} reply" in text
    bad = await hunt.client.get(f"/api/chats/{chat_id}/export?format=pdf", headers=ada["auth"])
    _problem(bad)


async def test_s21a_a_fork_at_another_chats_message_or_into_a_read_only_project_is_refused(
    hunt: Hunt,
) -> None:
    owner = await hunt.chat.world.register("owner")
    viewer = await hunt.chat.world.register("viewer")
    project_id = await team_project(hunt.chat, owner, viewer, "viewer")
    one, other = await _import(
        hunt, owner["auth"], [_talk(["q1", "a1"], "one"), _talk(["q2", "a2"], "two")]
    )
    other_msg = (await hunt.client.get(f"/api/chats/{other}", headers=owner["auth"])).json()
    foreign = other_msg["messages"][0]["id"]
    bad = await hunt.client.post(
        f"/api/chats/{one}/fork", json={"messageId": foreign}, headers=owner["auth"]
    )
    _problem(bad, 422)
    shared = await _import(hunt, owner["auth"], [_talk(["q", "a"], "s")], projectId=project_id)
    into = await hunt.client.post(
        f"/api/chats/{shared[0]}/fork", json={"projectId": project_id}, headers=viewer["auth"]
    )
    _problem(into, 403)
    mine = await hunt.client.post(f"/api/chats/{shared[0]}/fork", json={}, headers=viewer["auth"])
    assert mine.status_code == 201, mine.text
    assert [m["content"] for m in mine.json()["messages"]] == ["q", "a"]


# === the context sent with a reply ===============================================================
def _sent(request: RecordedRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = request.body["messages"]
    return messages


def _estimate(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(m["content"]) + OVERHEAD for m in messages)


async def test_s21a_a_long_chat_is_trimmed_oldest_first_keeping_its_system_prompt(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    turns = [f"turn {i:02d} " + "x" * 390 for i in range(30)]  # ~100 tokens each
    [chat_id] = await _import(hunt, ada["auth"], [_talk(turns, "long")])
    patched = await hunt.client.patch(
        f"/api/chats/{chat_id}", json={"systemPrompt": "SYSTEM " + "s" * 400},
        headers=ada["auth"],
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    before = len(hunt.chat.provider.requests)
    started = await hunt.chat.start(
        ada["auth"], model=hunt.tiny, chatId=chat_id, message="the newest question"
    )
    events = await hunt.chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    [request] = hunt.chat.provider.requests[before:]
    sent = _sent(request)
    assert sent[0] == {"role": "system", "content": "SYSTEM " + "s" * 400}
    assert sent[-1] == {"role": "user", "content": "the newest question"}
    history = [m["content"] for m in sent[1:-1]]
    assert history, "some history fits"
    assert history == turns[-len(history) :]  # the newest run, in order
    assert sent[1]["role"] == "user"
    assert _estimate(sent) <= WINDOW - RESERVE


async def test_s21a_a_reply_asked_for_many_tokens_leaves_room_for_them_in_the_window(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    turns = [f"turn {i:02d} " + "x" * 390 for i in range(30)]
    [chat_id] = await _import(hunt, ada["auth"], [_talk(turns, "long")])
    before = len(hunt.chat.provider.requests)
    started = await hunt.chat.start(
        ada["auth"], model=hunt.tiny, chatId=chat_id, message="the newest question",
        params={"maxTokens": 1200},
    )  # fmt: skip
    events = await hunt.chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    [request] = hunt.chat.provider.requests[before:]
    asked = request.body.get("max_completion_tokens") or request.body.get("max_tokens")
    assert asked == 1200
    sent = _sent(request)
    assert sent[-1] == {"role": "user", "content": "the newest question"}
    # OpenAI refuses (context_length_exceeded) a request whose prompt and completion together
    # exceed the window
    assert _estimate(sent) + asked <= WINDOW, (_estimate(sent), asked)


async def test_s21a_a_regeneration_in_a_long_chat_is_trimmed_to_the_window_too(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    turns = [f"turn {i:02d} " + "y" * 390 for i in range(30)]
    [chat_id] = await _import(hunt, ada["auth"], [_talk(turns, "long")])
    before = len(hunt.chat.provider.requests)
    response = await hunt.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id, "model": hunt.tiny}, headers=ada["auth"]
    )
    assert response.status_code == 201, response.text
    events = await hunt.chat.events(response.json()["sessionId"])
    assert events[-1][1] == "done", events[-1]
    [request] = hunt.chat.provider.requests[before:]
    sent = _sent(request)
    assert sent[-1] == {"role": "user", "content": turns[-2]}  # the question answered again
    assert [m["content"] for m in sent[:-1]] == turns[-1 - len(sent) : -2]
    assert sent[0]["role"] == "user"
    assert _estimate(sent) <= WINDOW - RESERVE


async def test_s21a_an_edit_too_long_for_the_window_is_a_422_that_changes_nothing(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    [chat_id] = await _import(hunt, ada["auth"], [_talk(["q1", "a1", "q2", "a2"], "t")])
    url = f"/api/chats/{chat_id}"
    before = (await hunt.client.get(url, headers=ada["auth"])).json()
    response = await hunt.client.post(
        "/api/chat/regenerate",
        json={"chatId": chat_id, "model": hunt.tiny, "message": "z" * (4 * WINDOW)},
        headers=ada["auth"],
    )
    assert _problem(response, 422).get("field") == "message"
    after = (await hunt.client.get(url, headers=ada["auth"])).json()
    assert after == before


async def test_s21a_a_system_prompt_that_leaves_no_room_is_a_422_that_saves_nothing(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    [chat_id] = await _import(hunt, ada["auth"], [_talk(["q1", "a1"], "t")])
    url = f"/api/chats/{chat_id}"
    patched = await hunt.client.patch(
        url, json={"systemPrompt": "s " * (2 * WINDOW)}, headers=ada["auth"]
    )
    assert patched.status_code == 200, patched.text
    before = (await hunt.client.get(url, headers=ada["auth"])).json()
    response = await hunt.client.post(
        "/api/chat/start", json={"chatId": chat_id, "model": hunt.tiny, "message": "hello"},
        headers=ada["auth"],
    )  # fmt: skip
    _problem(response, 422)
    after = (await hunt.client.get(url, headers=ada["auth"])).json()
    assert after == before


async def test_s21a_paging_pinned_and_archived_chats_with_one_timestamp_is_complete(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    same = T + 9000.5
    docs = [_talk(["q", "a"], f"s{i}", updated=same) for i in range(9)]
    ids = await _import(hunt, ada["auth"], docs)
    for chat_id, change in [(i, {"pinned": True}) for i in ids[:4]] + [
        (i, {"archived": True}) for i in ids[4:7]
    ]:
        r = await hunt.client.patch(f"/api/chats/{chat_id}", json=change, headers=ada["auth"])
        assert r.status_code == 200, r.text
    desc = sorted(ids, key=uuid.UUID, reverse=True)
    pinned = [i for page in await _all_pages(hunt, ada["auth"], 1, "&pinned=true") for i in page]
    assert pinned == [i for i in desc if i in ids[:4]]
    archived = [
        i for page in await _all_pages(hunt, ada["auth"], 2, "&archived=true") for i in page
    ]
    assert archived == [i for i in desc if i in ids[4:7]]
    rest = [i for page in await _all_pages(hunt, ada["auth"], 2, "&pinned=false") for i in page]
    assert rest == [i for i in desc if i in ids[7:]]


async def test_s21a_search_finds_words_of_scripts_written_with_spaces(hunt: Hunt) -> None:
    ada = await hunt.chat.world.register("ada")
    tag = uuid.uuid4().hex[:8]
    texts = {
        "Straße": f"Die Straße {tag} ist lang.",
        "привет": f"Ну, привет {tag}!",
        "Ελλάδα": f"Ταξίδι στην Ελλάδα {tag}.",
        "مرحبا": f"قال مرحبا {tag} للجميع",
    }
    ids = await _import(hunt, ada["auth"], [_talk([t, "ok"], "t") for t in texts.values()])
    for (word, _), chat_id in zip(texts.items(), ids, strict=True):
        hits = await _search(hunt, ada["auth"], f"{word} {tag}")
        assert [h["chatId"] for h in hits] == [chat_id], word
    # ASCII letters fold to one case
    [chat_id] = await _import(hunt, ada["auth"], [_talk([f"Paris {tag} trip", "ok"], "t")])
    assert [h["chatId"] for h in await _search(hunt, ada["auth"], f"PARIS {tag}")] == [chat_id]
    assert [h["chatId"] for h in await _search(hunt, ada["auth"], f"paris {tag}")] == [chat_id]


async def test_s21a_search_ignores_the_case_of_non_ascii_letters(hunt: Hunt) -> None:
    ada = await hunt.chat.world.register("ada")
    tag = uuid.uuid4().hex[:8]
    texts = {
        "élodie": f"Élodie arrive demain {tag}",
        "москва": f"Москва очень большая {tag}",
        "ärger": f"Ärger im Büro {tag}",
        "ΑΘΗΝΑ": f"η αθηνα {tag}",
    }
    ids = await _import(hunt, ada["auth"], [_talk([t, "ok"], "t") for t in texts.values()])
    missed = []
    for (word, _), chat_id in zip(texts.items(), ids, strict=True):
        hits = await _search(hunt, ada["auth"], f"{word} {tag}")
        if [h["chatId"] for h in hits] != [chat_id]:
            missed.append(word)
    assert missed == []


async def test_s21a_search_finds_a_word_inside_a_chinese_or_japanese_sentence(
    hunt: Hunt,
) -> None:
    ada = await hunt.chat.world.register("ada")
    tag = uuid.uuid4().hex[:8]
    texts = {"北京": f"我喜欢北京烤鸭 {tag}", "東京": f"東京タワーに行きました {tag}"}
    ids = await _import(hunt, ada["auth"], [_talk([t, "ok"], "t") for t in texts.values()])
    for (word, _), chat_id in zip(texts.items(), ids, strict=True):
        hits = await _search(hunt, ada["auth"], f"{word} {tag}")
        assert [h["chatId"] for h in hits] == [chat_id], word
