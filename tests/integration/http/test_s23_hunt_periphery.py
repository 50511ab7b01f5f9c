"""Hunt S23 of the chat features around the main flow, end to end through the real app
(Postgres, Redis, S3) with a loopback OpenAI provider: search over long messages, names made of
invisible characters (chat titles, preset names), what an import's model names may carry into a
chat, its export and the admins' ratings summary, ratings of earlier reply versions across
chats, and whether an admin's changes to an account leave a trace of who made them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_ops_security_hunt import app_logs, logged
from tests.unit.test_chatgpt_export import T, conversation, message
from whalli.adapters.embedded.stack import StackUrls

PROBLEM = "application/problem+json"
INDEXED = 100_000  # the characters of a message the search index reads (migration 0023)
INVISIBLE = ["\u200b\u200b", "\u2060", "\u200e\u200f", "\ufeff", "\u200b \u200d"]


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with chat_app(stack_urls, unique, WHALLI_CHAT_TITLES="off") as chat:
        yield chat


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _word() -> str:
    return "qz" + uuid.uuid4().hex[:12]


def _exchange(user: str, reply: str, slug: str = "gpt-4o", title: str = "t") -> dict[str, Any]:
    return conversation(
        [
            ("u", None, message("user", user, at=T)),
            ("a", "u", message("assistant", reply, at=T + 1, model_slug=slug)),
        ],
        current="a",
        title=title,
    )


async def _import(chat: Chat, auth: dict[str, str], conversations: list[Any]) -> list[str]:
    response = await chat.client.post(
        "/api/chats/import", json={"format": "chatgpt", "conversations": conversations},
        headers=auth,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["skipped"] == [], response.text
    return [c["chatId"] for c in response.json()["imported"]]


async def _search(chat: Chat, auth: dict[str, str], q: str) -> list[dict[str, Any]]:
    response = await chat.client.get("/api/chats/search", params={"q": q}, headers=auth)
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


async def _echo(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    started = await chat.start(auth, model="dev/echo", **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started


# === search ======================================================================================
async def test_s23p_a_word_late_in_a_long_message_is_found_by_search(hunt: Chat) -> None:
    """README: search finds "every word"; a message may hold 200,000 characters (MESSAGE_MAX)
    and a pasted document or a long reply does. A word past the 100,000th is never found."""
    ada = await hunt.world.register("ada")
    early, late = _word(), _word()
    filler = "lorem " * ((INDEXED + 20_000) // 6)
    text = f"{early} {filler}{late}"
    assert text.index(late) > INDEXED
    assert len(text) < 200_000
    [chat_id] = await _import(hunt, ada["auth"], [_exchange(text, "noted")])

    assert [h["chatId"] for h in await _search(hunt, ada["auth"], early)] == [chat_id]
    assert [h["chatId"] for h in await _search(hunt, ada["auth"], late)] == [chat_id]


async def test_s23p_a_pure_negation_or_an_or_query_answers_only_the_callers_chats(
    hunt: Chat,
) -> None:
    """websearch syntax (`-word`, `or`) is taken as such, never widening the search beyond the
    chats the caller can read: a stranger's chat holding neither word is not a hit."""
    ada, bob = await hunt.world.register("ada"), await hunt.world.register("bob")
    word, other = _word(), _word()
    [mine] = await _import(hunt, ada["auth"], [_exchange(f"{word} here", "ok")])
    [theirs] = await _import(hunt, bob["auth"], [_exchange("nothing in common", "ok")])

    either = await _search(hunt, ada["auth"], f"{word} or {other}")
    negated = await _search(hunt, ada["auth"], f"-{other}")

    assert [h["chatId"] for h in either] == [mine]
    assert mine in [h["chatId"] for h in negated]
    assert theirs not in [h["chatId"] for h in negated + either]


# === names =======================================================================================
@pytest.mark.parametrize("title", INVISIBLE)
async def test_s23p_a_title_of_only_invisible_characters_is_refused(hunt: Chat, title: str) -> None:
    """A title made from a first message, an import or a model never keeps such characters
    (``visible_words``); one given by a rename does, and the list shows nothing to click."""
    ada = await hunt.world.register("ada")
    started = await _echo(hunt, ada["auth"], message="a visible title")
    chat_id = started["chatId"]

    renamed = await hunt.client.patch(
        f"/api/chats/{chat_id}", json={"title": title}, headers=ada["auth"]
    )

    read = (await hunt.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()
    assert read["title"] == "a visible title"
    assert _problem(renamed, 422)["field"] == "title"


@pytest.mark.parametrize("name", INVISIBLE)
async def test_s23p_a_preset_name_of_only_invisible_characters_is_refused(
    hunt: Chat, name: str
) -> None:
    ada = await hunt.world.register("ada")

    made = await hunt.client.post(
        "/api/presets", json={"name": name, "model": "dev/echo"}, headers=ada["auth"]
    )

    assert (await hunt.client.get("/api/presets", headers=ada["auth"])).json() == []
    assert _problem(made, 422)["field"] == "name"


# === imports' model names ========================================================================
async def test_s23p_an_imported_model_name_is_one_line_of_visible_text(hunt: Chat) -> None:
    """Titles from an export are cleaned to one visible line; the model slug (free text from
    the uploaded file) only loses NUL, so a line break in it reaches every client that shows
    the model, and the Markdown export gets a heading nobody wrote."""
    ada = await hunt.world.register("ada")
    slug = "gpt-4o\n\n# Injected heading\n\u001b[31mred\u202e"
    [chat_id] = await _import(hunt, ada["auth"], [_exchange("question", "answer", slug=slug)])

    read = (await hunt.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()
    model = read["messages"][-1]["model"]
    exported = await hunt.client.get(f"/api/chats/{chat_id}/export", headers=ada["auth"])
    assert exported.status_code == 200, exported.text

    assert model.startswith("chatgpt/gpt-4o"), model
    assert all(ch.isprintable() for ch in model), repr(model)
    assert "\n# Injected heading" not in exported.text, exported.text


async def test_s23p_the_admin_ratings_summary_groups_imported_replies(hunt: Chat) -> None:
    """README: admins see the ratings per model at /api/admin/feedback, and
    whalli_chat_ratings_total counts them too; the metric labels every imported reply
    `imported` (the slug is whatever the uploaded file says). The summary instead makes a row
    of each invented slug, so any user fills the admins' report with text of their choosing."""
    ada = await hunt.world.register("ada")
    marker = uuid.uuid4().hex
    slugs = [f"{marker}-{i}" for i in range(3)]
    chat_ids = await _import(
        hunt, ada["auth"], [_exchange("q", "a", slug=s, title=f"c{i}") for i, s in enumerate(slugs)]
    )
    for chat_id in chat_ids:
        read = (await hunt.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()
        reply = read["messages"][-1]
        rated = await hunt.client.put(
            f"/api/chats/{chat_id}/messages/{reply['id']}/feedback",
            json={"rating": "up"}, headers=ada["auth"],
        )  # fmt: skip
        assert rated.status_code == 200, rated.text
    admin = await hunt.world.create_admin()

    summary = await hunt.client.get("/api/admin/feedback", headers=admin)

    assert summary.status_code == 200, summary.text
    rows = summary.json()["byModel"]
    assert not [r for r in rows if marker in r["model"]], rows
    imported = [r for r in rows if r["model"] == "imported"]
    assert imported, rows
    assert imported[0]["up"] >= 3, rows


# === ratings of earlier versions =================================================================
async def test_s23p_an_earlier_version_is_rated_only_through_its_own_chat(hunt: Chat) -> None:
    """A reply replaced by a regeneration may still be rated, in its chat; named through
    another chat of the same reader (or by a stranger through its own chat) it is a 404 that
    stores nothing, and a version has no versions of its own."""
    ada, bob = await hunt.world.register("ada"), await hunt.world.register("bob")
    started = await _echo(hunt, ada["auth"], message="first question")
    chat_id = started["chatId"]
    regenerated = await hunt.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=ada["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    await hunt.events(regenerated.json()["sessionId"])
    reply_id = (await hunt.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()[
        "messages"
    ][-1]["id"]
    versions_url = f"/api/chats/{chat_id}/messages/{reply_id}/versions"
    version_id = (await hunt.client.get(versions_url, headers=ada["auth"])).json()["items"][0]["id"]
    other = await _echo(hunt, ada["auth"], message="another chat")
    bobs = await _echo(hunt, bob["auth"], message="bob's chat")

    through_other = await hunt.client.put(
        f"/api/chats/{other['chatId']}/messages/{version_id}/feedback",
        json={"rating": "down"}, headers=ada["auth"],
    )  # fmt: skip
    by_stranger = await hunt.client.put(
        f"/api/chats/{bobs['chatId']}/messages/{version_id}/feedback",
        json={"rating": "down"}, headers=bob["auth"],
    )  # fmt: skip
    nested = await hunt.client.get(
        f"/api/chats/{chat_id}/messages/{version_id}/versions", headers=ada["auth"]
    )

    for refused in (through_other, by_stranger, nested):
        assert _problem(refused, 404)["code"] == "message_not_found"
    listed = (await hunt.client.get(versions_url, headers=ada["auth"])).json()["items"]
    assert listed[0]["feedback"] is None

    rated = await hunt.client.put(
        f"/api/chats/{chat_id}/messages/{version_id}/feedback",
        json={"rating": "down", "comment": "worse"}, headers=ada["auth"],
    )  # fmt: skip
    assert rated.status_code == 200, rated.text
    listed = (await hunt.client.get(versions_url, headers=ada["auth"])).json()["items"]
    assert (listed[0]["feedback"]["rating"], listed[0]["feedback"]["comment"]) == (
        "down",
        "worse",
    )


# === exports =====================================================================================
async def test_s23p_a_viewers_json_export_holds_their_own_rating_not_the_owners(
    hunt: Chat,
) -> None:
    """The JSON export is the chat as its reader reads it: each reader's own rating only."""
    ada, bob = await hunt.world.register("ada"), await hunt.world.register("bob")
    project = await team_project(hunt, ada, bob, "viewer")
    started = await _echo(hunt, ada["auth"], message="rate me", projectId=project)
    chat_id = started["chatId"]
    reply_id = (await hunt.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()[
        "messages"
    ][-1]["id"]
    url = f"/api/chats/{chat_id}/messages/{reply_id}/feedback"
    owner = await hunt.client.put(
        url, json={"rating": "down", "comment": "owner's note"}, headers=ada["auth"]
    )
    assert owner.status_code == 200, owner.text
    viewer = await hunt.client.put(url, json={"rating": "up"}, headers=bob["auth"])
    assert viewer.status_code == 200, viewer.text

    exported = await hunt.client.get(
        f"/api/chats/{chat_id}/export?format=json", headers=bob["auth"]
    )

    assert exported.status_code == 200, exported.text
    body = json.loads(exported.content)
    assert body["messages"][-1]["feedback"]["rating"] == "up"
    assert "owner's note" not in exported.text


# === admin actions ===============================================================================
async def test_s23p_an_admin_disabling_an_account_is_logged_with_who_and_whom(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Admin actions must be audited: after an account is disabled (its sessions and keys
    revoked), operators must be able to tell which admin did it. The app's own JSON log holds
    one access line per request (route template, status, request id) and nothing naming the
    admin or the account."""
    async with (
        app_logs(tmp_path) as path,
        chat_app(stack_urls, unique, WHALLI_CHAT_TITLES="off") as chat,
    ):
        bob = await chat.world.register("bob")
        admin = await chat.world.create_admin()
        admin_id = (await chat.client.get("/api/auth/me", headers=admin)).json()["id"]
        bob_id = bob["user"]["id"]
        disabled = await chat.client.patch(
            f"/api/admin/users/{bob_id}", json={"disabled": True}, headers=admin
        )
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled"] is True
    lines = [line for line in logged(path).splitlines() if admin_id in line and bob_id in line]
    assert lines, "no log line names both the admin and the account they disabled"


# === presets whose model left the catalog ========================================================
SHIPPED = Path(__file__).parents[3] / "catalog" / "models.toml"


def _catalog_with(tmp_path: Path, model_id: str) -> str:
    extra = f"""

[[model]]
id = "{model_id}"
provider = "openai"
upstream = "gpt-s23-gone"
min_plan = "free"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = 8000
max_output_tokens = 1500
"""
    path = tmp_path / "models.toml"
    path.write_text(SHIPPED.read_text() + extra)
    return str(path)


async def test_s23p_a_preset_whose_model_left_the_catalog_can_still_be_renamed(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """UpdatePresetHandler: "a model it is changed to must be usable now, one it keeps is not
    checked again here (its use is)". A preset with parameters is checked again anyway, so an
    operator removing a model from the catalog leaves its users unable to rename (or fix the
    prompt of) such presets: every PATCH that keeps the model answers that it does not exist."""
    gone = f"openai/s23p-{unique}-gone"
    catalog = _catalog_with(tmp_path, gone)
    async with chat_app(stack_urls, unique, WHALLI_CATALOG_PATH=catalog) as before:
        ada = await before.world.register("ada")
        made = await before.client.post(
            "/api/presets",
            json={"name": "long answers", "model": gone, "params": {"maxTokens": 1000}},
            headers=ada["auth"],
        )
        assert made.status_code == 201, made.text
    preset_id = made.json()["id"]
    async with chat_app(stack_urls, unique, WHALLI_CHAT_TITLES="off") as after:
        listed = await after.client.get("/api/presets", headers=ada["auth"])
        assert [p["id"] for p in listed.json()] == [preset_id]
        renamed = await after.client.patch(
            f"/api/presets/{preset_id}",
            json={"name": "old model", "systemPrompt": "be brief"},
            headers=ada["auth"],
        )
        assert renamed.status_code == 200, renamed.text
        assert (renamed.json()["name"], renamed.json()["model"]) == ("old model", gone)
