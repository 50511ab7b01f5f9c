"""An audit (a helper's bug hunt) of public chat share links and of the refusal of API keys on
the admin routes, on the real app (uvicorn, Postgres, Redis, a fake provider). Each test asserts
the correct behaviour. Five were findings, failing before their fixes: links outliving their
creator's disabled account or membership, the admin usage route answering a key for one's own
account, a failed reply shown as an ordinary answer, and a rename showing through a link."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces
from whalli.adapters.embedded.stack import StackUrls

MODEL = "openai/gpt-4o-mini"
SHARED_KEYS = {"title", "sharedAt", "messages", "model"}
MESSAGE_KEYS = {"role", "content", "model", "createdAt", "status", "reasoning"}


# --- helpers ------------------------------------------------------------------------------------
async def _exchange(
    chat: Chat, auth: dict[str, str], message: str | None = None, **body: Any
) -> dict[str, Any]:
    """One question answered to the end; the start's answer (sessionId, chatId, messageId)."""
    started = await chat.start(auth, model=MODEL, message=message or f"q {uuid.uuid4()}", **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] in ("done", "error"), events
    return started


async def _new_chat(chat: Chat, auth: dict[str, str], **body: Any) -> str:
    return str((await _exchange(chat, auth, **body))["chatId"])


async def _share(chat: Chat, auth: dict[str, str], chat_id: str) -> dict[str, Any]:
    made = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=auth)
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def _public(chat: Chat, token: str) -> httpx.Response:
    return await chat.client.get(f"/api/shared/{token}")


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _not_found(response: httpx.Response, code: str) -> None:
    assert response.status_code == 404, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code, response.text


# --- what the public route shows ----------------------------------------------------------------
async def test_the_public_snapshot_shows_no_ids_emails_prompt_usage_costs_or_errors(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    first = await _exchange(chat, alice["auth"], systemPrompt="SECRET-PROMPT-41")
    chat_id = first["chatId"]
    # a second reply that fails with a distinctive upstream error
    chat.provider.script(
        Reply(status=400, body={"error": {"message": "UPSTREAM-SECRET-77", "type": "x",
                                          "param": None, "code": "bad"}})
    )  # fmt: skip
    await _exchange(chat, alice["auth"], chatId=chat_id)
    made = await _share(chat, alice["auth"], chat_id)

    shown = await _public(chat, made["token"])

    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert set(body) == SHARED_KEYS
    assert all(set(m) == MESSAGE_KEYS for m in body["messages"])
    # the failed reply had no text: left out (its status would say failed, never why)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert made["messageCount"] == 3  # the count is of what the link shows
    project_id = (await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])).json()[
        "projectId"
    ]
    for secret in (
        alice["user"]["id"], alice["email"], chat_id, first["messageId"], made["id"],
        "SECRET-PROMPT-41", "UPSTREAM-SECRET-77", "HTTP 400", "cost", "usage", "Tokens",
        project_id,
    ):  # fmt: skip
        assert secret not in shown.text, secret
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["x-robots-tag"] == "noindex"
    assert "access-control-allow-origin" not in shown.headers
    assert "set-cookie" not in shown.headers


async def test_the_public_route_needs_no_credential_and_ignores_a_bad_one(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    token = (await _share(chat, alice["auth"], await _new_chat(chat, alice["auth"])))["token"]
    for headers in ({}, {"Authorization": "Bearer junk"}, {"X-API-Key": "whk_junk"}):
        answer = await chat.client.get(f"/api/shared/{token}", headers=headers)
        assert answer.status_code == 200, (headers, answer.text)


async def test_later_messages_an_edit_and_a_regeneration_do_not_show_through(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"], message="original question")
    token = (await _share(chat, alice["auth"], chat_id))["token"]
    before = (await _public(chat, token)).json()["messages"]
    assert [m["role"] for m in before] == ["user", "assistant"]

    regen = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id, "message": "edited question"},
        headers=alice["auth"],
    )  # fmt: skip
    assert regen.status_code == 201, regen.text
    await chat.events(regen.json()["sessionId"])
    await _exchange(chat, alice["auth"], message="a later question", chatId=chat_id)
    after = (await _public(chat, token)).json()["messages"]

    # the snapshot is a copy: the question as it was, the reply since replaced, nothing later
    assert after == before
    assert (after[0]["role"], after[0]["content"]) == ("user", "original question")


async def test_a_reply_in_flight_when_shared_is_never_shown(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    gate = asyncio.Event()
    chat.provider.script(Reply(chunks=openai_pieces(["slow", " words"]), gate=gate))
    started = await chat.start(alice["auth"], model=MODEL, message="in flight")
    made = await _share(chat, alice["auth"], started["chatId"])
    gate.set()
    await chat.events(started["sessionId"])

    shown = (await _public(chat, made["token"])).json()["messages"]
    assert made["messageCount"] == 1
    assert [(m["role"], m["content"]) for m in shown] == [("user", "in flight")]


async def test_a_failed_reply_is_not_shown_as_an_ordinary_answer(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"])
    chat.provider.script(Reply(status=400, body={"error": {"message": "no", "code": "bad"}}))
    await _exchange(chat, alice["auth"], chatId=chat_id)
    token = (await _share(chat, alice["auth"], chat_id))["token"]

    replies = [m for m in (await _public(chat, token)).json()["messages"]
               if m["role"] == "assistant"]  # fmt: skip
    assert len(replies) == 1 or replies[-1].get("status") == "failed", replies


async def test_renaming_the_chat_later_does_not_change_what_the_link_shows(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"])
    token = (await _share(chat, alice["auth"], chat_id))["token"]
    before = (await _public(chat, token)).json()["title"]
    renamed = await chat.client.patch(
        f"/api/chats/{chat_id}", json={"title": "Layoffs: private"}, headers=alice["auth"]
    )
    assert renamed.status_code == 200, renamed.text
    assert (await _public(chat, token)).json()["title"] == before


# --- the link's life ----------------------------------------------------------------------------
async def test_deleting_the_chat_or_the_project_closes_its_links(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"])
    by_chat = (await _share(chat, alice["auth"], chat_id))["token"]
    deleted = await chat.client.delete(f"/api/chats/{chat_id}", headers=alice["auth"])
    assert deleted.status_code == 204
    _not_found(await _public(chat, by_chat), "share_not_found")

    project = await chat.client.post("/api/projects", json={"name": "P"}, headers=alice["auth"])
    project_id = project.json()["id"]
    other = await _new_chat(chat, alice["auth"], projectId=project_id)
    by_project = (await _share(chat, alice["auth"], other))["token"]
    assert (await _public(chat, by_project)).status_code == 200
    gone = await chat.client.delete(f"/api/projects/{project_id}", headers=alice["auth"])
    assert gone.status_code == 204, gone.text
    _not_found(await _public(chat, by_project), "share_not_found")


async def test_disabling_the_creators_account_closes_their_links(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    mallory = await chat.world.register("mallory")
    token = (await _share(chat, mallory["auth"], await _new_chat(chat, mallory["auth"])))["token"]
    disabled = await chat.client.patch(
        f"/api/admin/users/{mallory['user']['id']}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text
    _not_found(await _public(chat, token), "share_not_found")


async def test_a_removed_members_links_close_with_their_access(chat: Chat) -> None:
    owner, eve = await chat.world.register("owner"), await chat.world.register("eve")
    project_id = await team_project(chat, owner, eve, "editor")
    chat_id = await _new_chat(chat, owner["auth"], projectId=project_id)
    by_owner = (await _share(chat, owner["auth"], chat_id))["token"]
    by_eve = (await _share(chat, eve["auth"], chat_id))["token"]
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{eve['user']['id']}", headers=owner["auth"]
    )
    assert removed.status_code == 204
    assert (await chat.client.get(f"/api/chats/{chat_id}", headers=eve["auth"])).status_code == 404
    assert (await _public(chat, by_owner)).status_code == 200
    _not_found(await _public(chat, by_eve), "share_not_found")


# --- who may revoke -----------------------------------------------------------------------------
async def test_revoking_is_for_writers_and_the_creator_and_404s_alike_for_strangers(
    chat: Chat,
) -> None:
    owner, vic = await chat.world.register("owner"), await chat.world.register("vic")
    eve, sam = await chat.world.register("eve"), await chat.world.register("sam")
    project_id = await team_project(chat, owner, vic, "viewer")
    added = await chat.client.post(
        f"/api/projects/{project_id}/members", json={"email": eve["email"], "role": "editor"},
        headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201
    chat_id = await _new_chat(chat, owner["auth"], projectId=project_id)
    by_owner = await _share(chat, owner["auth"], chat_id)
    by_eve = await _share(chat, eve["auth"], chat_id)
    url = f"/api/chats/{chat_id}/shares"

    viewer = await chat.client.delete(f"{url}/{by_owner['id']}", headers=vic["auth"])
    assert (viewer.status_code, viewer.json()["code"]) == (403, "permission_denied")
    viewer_create = await chat.client.post(url, headers=vic["auth"])
    assert viewer_create.status_code == 403
    for method in ("POST", "GET"):
        _not_found(await chat.client.request(method, url, headers=sam["auth"]), "chat_not_found")
    _not_found(
        await chat.client.delete(f"{url}/{by_owner['id']}", headers=sam["auth"]), "chat_not_found"
    )
    _not_found(
        await chat.client.get(f"/api/chats/{chat_id}", headers=sam["auth"]), "chat_not_found"
    )
    assert (await _public(chat, by_owner["token"])).status_code == 200

    # the creator demoted to viewer may still revoke their own link (documented)
    demoted = await chat.client.patch(
        f"/api/projects/{project_id}/members/{eve['user']['id']}", json={"role": "viewer"},
        headers=owner["auth"],
    )  # fmt: skip
    assert demoted.status_code == 200, demoted.text
    own = await chat.client.delete(f"{url}/{by_eve['id']}", headers=eve["auth"])
    assert own.status_code == 204, own.text
    _not_found(await _public(chat, by_eve["token"]), "share_not_found")


async def test_another_chats_link_cannot_be_revoked_through_this_chats_url(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    mine, other = (await _new_chat(chat, alice["auth"])), (await _new_chat(chat, alice["auth"]))
    bobs = await _new_chat(chat, bob["auth"])
    shared = await _share(chat, alice["auth"], other)

    same_user = await chat.client.delete(
        f"/api/chats/{mine}/shares/{shared['id']}", headers=alice["auth"]
    )
    by_bob = await chat.client.delete(
        f"/api/chats/{bobs}/shares/{shared['id']}", headers=bob["auth"]
    )

    _not_found(same_user, "share_not_found")
    _not_found(by_bob, "share_not_found")
    assert (await _public(chat, shared["token"])).status_code == 200


async def test_two_revocations_at_once_one_wins_and_the_other_is_404(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"])
    shared = await _share(chat, alice["auth"], chat_id)
    url = f"/api/chats/{chat_id}/shares/{shared['id']}"
    answers = await asyncio.gather(*(chat.client.delete(url, headers=alice["auth"]) for _ in "ab"))
    assert sorted(a.status_code for a in answers) == [204, 404]
    _not_found(await chat.client.delete(url, headers=alice["auth"]), "share_not_found")
    _not_found(await _public(chat, shared["token"]), "share_not_found")


# --- the limit ----------------------------------------------------------------------------------
async def test_twenty_five_shares_at_once_make_exactly_twenty_links(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"])
    url = f"/api/chats/{chat_id}/shares"
    answers = await asyncio.gather(
        *(chat.client.post(url, headers=alice["auth"]) for _ in range(25))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 20 + [422] * 5, statuses
    refused = next(a for a in answers if a.status_code == 422)
    assert (refused.json()["code"], refused.json()["limit"]) == ("share_limit_reached", 20)
    listed = (await chat.client.get(url, headers=alice["auth"])).json()
    assert len(listed) == 20
    assert len({a.json()["token"] for a in answers if a.status_code == 201}) == 20

    revoked = await chat.client.delete(f"{url}/{listed[0]['id']}", headers=alice["auth"])
    assert revoked.status_code == 204
    again = await asyncio.gather(*(chat.client.post(url, headers=alice["auth"]) for _ in range(3)))
    assert sorted(a.status_code for a in again) == [201, 422, 422]


# --- odd tokens and methods ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "A" * 5000,
        "A" * 129,
        "%C3%A9" * 43,
        "%E2%80%8B" + "A" * 43,
        "..%2F..%2Fhealth",
        "%2e%2e",
        "A" * 43 + "%00",
        "A" * 43 + "%20",
        "%F0%9F%90%8B" * 20,
        "'%20OR%201=1--" + "A" * 40,
    ],
)
async def test_malformed_tokens_are_404_problems_never_500(chat: Chat, path: str) -> None:
    answer = await chat.client.get(f"/api/shared/{path}")
    assert answer.status_code == 404, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_a_token_changed_in_case_or_by_a_character_opens_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    token = (await _share(chat, alice["auth"], await _new_chat(chat, alice["auth"])))["token"]
    flipped = token.swapcase()
    changed = ("B" if token[0] != "B" else "C") + token[1:]
    for wrong in (flipped, changed, token[:-1], token + "A"):
        if wrong != token:
            _not_found(await _public(chat, wrong), "share_not_found")


async def test_head_and_options_on_the_public_route_leak_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat_id = await _new_chat(chat, alice["auth"], message="HEAD-SECRET-9")
    token = (await _share(chat, alice["auth"], chat_id))["token"]
    for method in ("HEAD", "OPTIONS"):
        answer = await chat.client.request(method, f"/api/shared/{token}")
        assert answer.status_code < 500, (method, answer.status_code)
        assert "HEAD-SECRET-9" not in answer.text
        assert "access-control-allow-origin" not in answer.headers
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = await chat.client.request(method, f"/api/shared/{token}")
        assert answer.status_code == 405, (method, answer.status_code)
    assert (await _public(chat, token)).status_code == 200  # nothing revoked it


async def test_the_public_route_is_limited_per_ip_like_other_anonymous_traffic(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    env = {"WHALLI_RATE_LIMIT_IP_PER_MIN": "6", "WHALLI_TRUSTED_PROXIES": "127.0.0.1/32"}
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    other_ip = {"X-Forwarded-For": f"192.0.2.{secrets.randbelow(250) + 1}"}
    mine = {"X-Forwarded-For": ip}
    async with chat_app(stack_urls, unique, **env) as chat:
        email = f"alice-{uuid.uuid4().hex[:10]}@example.com"
        registered = await chat.client.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "a"},
            headers=other_ip,
        )  # fmt: skip
        assert registered.status_code == 201, registered.text
        auth = {"Authorization": f"Bearer {registered.json()['tokens']['accessToken']}"}
        token = (await _share(chat, auth, await _new_chat(chat, auth)))["token"]
        url = f"/api/shared/{token}"
        answers = [await chat.client.get(url, headers=mine) for _ in range(8)]
        probe = await chat.client.get(f"/api/shared/{'A' * 43}", headers=mine)
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 6 + [429] * 2, statuses
    assert answers[0].headers["ratelimit-limit"] == "6"
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert probe.status_code == 429  # guessing tokens is limited too


# --- OpenAPI ------------------------------------------------------------------------------------
async def test_the_openapi_document_lists_no_security_on_the_public_route_only(
    chat: Chat,
) -> None:
    document = (await chat.client.get("/api/docs/openapi.json")).json()
    assert "security" not in document or document["security"] in ([], [{}])
    public = document["paths"]["/api/shared/{token}"]["get"]
    assert public.get("security") in (None, [], [{}]), public.get("security")
    managed = document["paths"]["/api/chats/{chat_id}/shares"]
    for method in ("get", "post"):
        assert managed[method]["security"] == [{"accessToken": []}, {"apiKey": []}]
    revoke = document["paths"]["/api/chats/{chat_id}/shares/{share_id}"]["delete"]
    assert revoke["security"] == [{"accessToken": []}, {"apiKey": []}]
    for path, ops in document["paths"].items():
        if path.startswith("/api/admin"):
            for op in ops.values():
                assert op["security"] == [{"accessToken": []}], path


# --- admin routes refuse API keys ---------------------------------------------------------------
async def _admin_with_key(chat: Chat) -> tuple[dict[str, str], str, dict[str, Any]]:
    admin = await chat.world.create_admin()
    created = await chat.client.post("/api/keys", json={"name": "script"}, headers=admin)
    assert created.status_code == 201, created.text
    me = (await chat.client.get("/api/auth/me", headers=admin)).json()
    return admin, created.json()["secret"], me


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
async def test_an_admins_key_changes_nothing_on_any_admin_route(chat: Chat, header: str) -> None:
    admin, secret, me = await _admin_with_key(chat)
    key = {"Authorization": f"Bearer {secret}"} if header == "bearer" else {"X-API-Key": secret}
    bob = await chat.world.register("bob")
    bob_url = f"/api/admin/users/{bob['user']['id']}"
    me_url = f"/api/admin/users/{me['id']}"
    routes = [
        ("GET", "/api/admin/users", None),
        ("GET", "/api/admin/users?q=bob", None),
        ("PATCH", bob_url, {"plan": "pro", "role": "admin", "disabled": True}),
        ("PATCH", bob_url, {"disabled": True}),
        ("PATCH", me_url, {"disabled": True}),
        ("PATCH", me_url, {"role": "user"}),
        ("PATCH", f"/api/admin/users/{uuid.uuid4()}", {"plan": "pro"}),
        ("GET", f"{bob_url}/usage", None),
        ("GET", f"/api/admin/users/{uuid.uuid4()}/usage", None),
        ("GET", "/api/admin/feedback", None),
    ]
    for method, url, body in routes:
        refused = await chat.client.request(method, url, json=body, headers=key)
        assert refused.status_code == 403, (method, url, refused.text)
        assert refused.json()["code"] == "api_key_not_allowed", refused.text
        assert bob["email"] not in refused.text
    bob_now = (await chat.client.get("/api/auth/me", headers=bob["auth"])).json()
    assert (bob_now["plan"], bob_now.get("role", "user")) == ("free", "user")
    me_now = (await chat.client.get("/api/auth/me", headers=admin)).json()
    assert me_now == me
    assert (await chat.client.get("/api/auth/me", headers=key)).status_code == 200  # key alive


@pytest.mark.parametrize("who", ["admin", "user"])
async def test_the_admin_usage_route_refuses_a_key_even_for_ones_own_account(
    chat: Chat, who: str
) -> None:
    if who == "admin":
        _, secret, me = await _admin_with_key(chat)
    else:
        bob = await chat.world.register("bob")
        made = await chat.client.post("/api/keys", json={"name": "k"}, headers=bob["auth"])
        secret, me = made.json()["secret"], bob["user"]
    answer = await chat.client.get(
        f"/api/admin/users/{me['id']}/usage", headers={"X-API-Key": secret}
    )
    assert answer.status_code == 403, answer.text
