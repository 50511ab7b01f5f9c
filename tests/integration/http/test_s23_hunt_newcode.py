"""Hunt (s23): this session's new identity code over HTTP, on the real app (Postgres, Redis, S3),
with the loopback OAuth server of ``tests/support/oauth_server.py`` playing GitHub and Google.

Areas: deleting one's own account (``DELETE /api/auth/me``), linking a provider to a signed-in
account (``POST/DELETE /api/auth/oauth/{provider}/link``, ``GET /api/auth/oauth/links``) and
internationalized email domains (``normalize_email``, ``email_spellings``).

Deletion and the link flow held up under races and CSRF-style misuse (the passing tests pin
that). The defects (strict ``xfail``) are in the address rules (an A-label hiding whitespace,
limits counted in characters instead of encoded octets, U+3002 not a dot, invisible code
points IDNA disallows), in a link's address comparison for accounts stored under the ASCII
spelling, in what ``GET /api/auth/me`` tells a settings page, and in the OpenAPI description of
the link callback's answer."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from structlog.testing import capture_logs

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.support.access import changed
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.oauth_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeOAuthServer,
    GitHubAccount,
    GoogleAccount,
)
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls


# === helpers ====================================================================================
def assert_problem(response: httpx.Response, status: int, label: str = "") -> dict[str, Any]:
    where = f"{label}: {response.status_code} {response.text[:300]}"
    assert response.status_code == status, where
    assert response.headers["content-type"].startswith("application/problem+json"), where
    body: dict[str, Any] = response.json()
    assert body["status"] == status, where
    assert body.get("detail"), where
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def local_part(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


async def register(chat: Chat, email: str) -> httpx.Response:
    return await chat.client.post("/api/auth/register", json={"email": email, "password": PASSWORD})


async def delete_me(chat: Chat, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await chat.client.request("DELETE", "/api/auth/me", json=body, headers=auth)


def _cookie(response: httpx.Response) -> str:
    found = re.search(r"whalli_oauth=([^;]+)", response.headers["set-cookie"])
    assert found is not None, response.headers
    return found[1]


async def _consent(authorization_url: str) -> str:
    """The browser at the provider, which consents at once: the callback's path and query."""
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(authorization_url)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["location"])
    return f"{back.path}?{back.query}"


async def callback(chat: Chat, path_and_query: str, binding: str | None) -> httpx.Response:
    chat.client.cookies.clear()
    headers = {} if binding is None else {"Cookie": f"whalli_oauth={binding}"}
    return await chat.client.get(f"{path_and_query}&format=json", headers=headers)


async def start_link(chat: Chat, auth: dict[str, str], provider: str) -> tuple[str, str]:
    """POST .../link as the web app does: the provider's consent answered, then the callback's
    path and query and the binding cookie set on this browser."""
    started = await chat.client.post(f"/api/auth/oauth/{provider}/link", headers=auth)
    assert started.status_code == 200, started.text
    back = await _consent(started.json()["authorizationUrl"])
    return back, _cookie(started)


async def link(chat: Chat, auth: dict[str, str], provider: str) -> httpx.Response:
    back, binding = await start_link(chat, auth, provider)
    return await callback(chat, back, binding)


async def oauth_sign_in(chat: Chat, provider: str) -> httpx.Response:
    started = await chat.client.get(f"/api/auth/oauth/{provider}/authorize")
    assert started.status_code == 302, started.text
    back = await _consent(started.headers["location"])
    return await callback(chat, back, _cookie(started))


async def links(chat: Chat, auth: dict[str, str]) -> list[tuple[str, str | None]]:
    response = await chat.client.get("/api/auth/oauth/links", headers=auth)
    assert response.status_code == 200, response.text
    return [(item["provider"], item["email"]) for item in response.json()["items"]]


async def user_id_of(chat: Chat, auth: dict[str, str]) -> str | None:
    response = await chat.client.get("/api/auth/me", headers=auth)
    if response.status_code == 401:
        return None
    assert response.status_code == 200, response.text
    found: str = response.json()["id"]
    return found


@pytest.fixture
async def oauth_chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, oauth_server: FakeOAuthServer
) -> AsyncIterator[Chat]:
    url = oauth_server.url
    async with chat_app(
        stack_urls, unique,
        WHALLI_GITHUB_CLIENT_ID=CLIENT_ID, WHALLI_GITHUB_CLIENT_SECRET=CLIENT_SECRET,
        WHALLI_GITHUB_AUTHORIZE_URL=f"{url}/login/oauth/authorize",
        WHALLI_GITHUB_TOKEN_URL=f"{url}/login/oauth/access_token", WHALLI_GITHUB_API_URL=url,
        WHALLI_GOOGLE_CLIENT_ID=CLIENT_ID, WHALLI_GOOGLE_CLIENT_SECRET=CLIENT_SECRET,
        WHALLI_GOOGLE_AUTHORIZE_URL=f"{url}/o/oauth2/v2/auth",
        WHALLI_GOOGLE_TOKEN_URL=f"{url}/token", WHALLI_GOOGLE_USERINFO_URL=f"{url}/userinfo",
    ) as chat:  # fmt: skip
        yield chat


def github_account(email: str, *, verified: bool = True) -> GitHubAccount:
    return GitHubAccount(
        id=uuid.uuid4().int % 10**12, login=f"octo{uuid.uuid4().hex[:8]}",
        emails=[(email, True, verified)],
    )  # fmt: skip


# === internationalized email domains ============================================================
@pytest.mark.parametrize("space", ["\u2028", "\u1680"], ids=["line-separator", "ogham-space"])
async def test_an_a_label_hiding_whitespace_is_never_stored_as_an_address(
    oauth_chat: Chat, oauth_server: FakeOAuthServer, space: str
) -> None:
    chat = oauth_chat
    local = local_part("ws")
    label = f"a{space}b"
    a_label = "xn--" + label.encode("punycode").decode("ascii")
    typed = await register(chat, f"{local}@{label}.example")
    assert_problem(typed, 422, "the address typed in Unicode is refused")
    alice = await chat.world.register("alice")
    oauth_server.github_account = github_account(f"{local}@{a_label}.example")

    linked = await link(chat, alice["auth"], "github")

    assert linked.status_code == 200, linked.text
    [(provider, email)] = await links(chat, alice["auth"])
    assert provider == "github"
    assert email is None or not any(ch.isspace() for ch in email), repr(email)


@pytest.mark.parametrize(
    ("labels", "what"),
    [
        (["b\u00fccher" * 10], "a label of 60 characters, 67 octets as an A-label"),
        (["\u00fc" * 55] * 4, "247 characters in all, 271 octets in ASCII"),
    ],
    ids=["label", "address"],
)
async def test_a_domain_too_long_once_encoded_is_refused(
    chat: Chat, labels: list[str], what: str
) -> None:
    email = f"{local_part('long')}@{'.'.join(labels)}.example"
    ascii_labels = ["xn--" + label.encode("punycode").decode("ascii") for label in labels]
    ascii_email = f"{email.split('@')[0]}@{'.'.join(ascii_labels)}.example"
    assert len(email) <= 254
    assert all(len(label) <= 63 for label in labels)
    assert len(ascii_email) > 254 or any(len(label) > 63 for label in ascii_labels)

    response = await register(chat, email)

    body = assert_problem(response, 422, what)
    assert "email" in str(body).lower(), body


async def test_an_ideographic_full_stop_in_a_domain_is_a_dot_and_not_a_second_account(
    chat: Chat,
) -> None:
    local = local_part("stop")
    assert (await register(chat, f"{local}@a.b.example")).status_code == 201

    again = await register(chat, f"{local}@a\u3002b.example")

    assert again.status_code in (409, 422), again.text
    assert_problem(again, again.status_code, "one mailbox, another spelling")


@pytest.mark.parametrize("invisible", ["\u034f", "\ufe0f"], ids=["cgj", "vs16"])
async def test_an_address_differing_by_an_invisible_code_point_is_not_another_account(
    chat: Chat, invisible: str
) -> None:
    local = local_part("seen")
    assert (await register(chat, f"{local}@ab.example")).status_code == 201

    lookalike = await register(chat, f"{local}@a{invisible}b.example")

    assert lookalike.status_code in (409, 422), lookalike.text
    assert_problem(lookalike, lookalike.status_code, "an invisible difference")


async def test_a_member_added_by_the_ascii_spelling_of_a_unicode_domain_is_that_account(
    chat: Chat,
) -> None:
    owner = await chat.world.register("owner")
    local = local_part("member")
    joined = await register(chat, f"{local}@b\u00fccher.example")
    assert joined.status_code == 201, joined.text
    created = await chat.client.post("/api/projects", json={"name": "T"}, headers=owner["auth"])
    project_id = created.json()["id"]

    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": f"{local.upper()}@XN--BCHER-KVA.example", "role": "viewer"},
        headers=owner["auth"],
    )

    assert added.status_code == 201, added.text
    members = await chat.client.get(f"/api/projects/{project_id}/members", headers=owner["auth"])
    assert joined.json()["user"]["id"] in members.text


# === account deletion ===========================================================================
async def test_a_deletion_without_a_body_is_a_problem_and_deletes_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")

    response = await chat.client.request("DELETE", "/api/auth/me", headers=alice["auth"])

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await user_id_of(chat, alice["auth"]) == alice["user"]["id"]


async def test_two_deletions_of_one_account_at_once_delete_it_once_and_neither_fails(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")

    first, second = await asyncio.gather(
        delete_me(chat, alice["auth"], password=PASSWORD),
        delete_me(chat, alice["auth"], password=PASSWORD),
    )

    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [204, 401], (first.text, second.text)
    assert await user_id_of(chat, alice["auth"]) is None


async def test_no_session_opened_by_a_login_or_refresh_racing_the_deletion_survives_it(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")

    deleted, refreshed, logged_in = await asyncio.gather(
        delete_me(chat, alice["auth"], password=PASSWORD),
        chat.client.post(
            "/api/auth/refresh", json={"refreshToken": alice["tokens"]["refreshToken"]}
        ),
        chat.client.post("/api/auth/login", json={"email": alice["email"], "password": PASSWORD}),
    )

    assert deleted.status_code == 204, deleted.text
    for answer in (refreshed, logged_in):
        assert answer.status_code < 500, answer.text
        if answer.status_code == 200:
            tokens = answer.json()
            assert await user_id_of(chat, bearer(tokens["accessToken"])) is None
            again = {"refreshToken": tokens["refreshToken"]}
            assert (await chat.client.post("/api/auth/refresh", json=again)).status_code == 401
        else:
            assert_problem(answer, answer.status_code, "refused")


async def test_a_project_handed_over_while_its_owner_is_deleted_survives_with_its_new_owner(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    team = await team_project(chat, alice, bob, "editor")
    promoted = await chat.client.patch(
        f"/api/projects/{team}/members/{bob['user']['id']}", json={"role": "owner"},
        headers=alice["auth"],
    )  # fmt: skip
    assert promoted.status_code == 200, promoted.text

    deleted, left = await asyncio.gather(
        delete_me(chat, alice["auth"], password=PASSWORD),
        chat.client.delete(
            f"/api/projects/{team}/members/{alice['user']['id']}", headers=alice["auth"]
        ),
    )

    assert deleted.status_code in (204, 409), deleted.text
    assert left.status_code in (204, 401, 404), left.text
    kept = await chat.client.get(f"/api/projects/{team}", headers=bob["auth"])
    assert kept.status_code == 200, kept.text
    if deleted.status_code == 409:
        assert deleted.json()["code"] == "owns_shared_projects"
        assert await user_id_of(chat, alice["auth"]) == alice["user"]["id"]


async def test_a_live_reply_read_by_a_co_member_ends_for_them_when_its_author_is_deleted(
    chat: Chat,
) -> None:
    bob, alice = await chat.world.register("bob"), await chat.world.register("alice")
    team = await team_project(chat, bob, alice, "editor")
    gate = asyncio.Event()
    chat.provider.script(Reply(chunks=openai_pieces(["first", " rest"]), gate=gate, gate_after=2))
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"live {uuid.uuid4()}", projectId=team
    )
    try:
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=bob["auth"])
        assert read.status_code == 200, read.text
        reader_pass = read.json()["messages"][-1]["sessionId"]
        assert reader_pass
        assert (await delete_me(chat, alice["auth"], password=PASSWORD)).status_code == 204
    finally:
        gate.set()

    gone = await chat.client.get(f"/api/chats/{started['chatId']}", headers=bob["auth"])
    assert_problem(gone, 404, "the deleted author's chat")
    stream = await chat.client.get(f"/api/chat/stream?sessionId={reader_pass}", headers=bob["auth"])
    if stream.status_code != 404:  # or the reply's end, saying its chat went
        assert stream.status_code == 200, stream.text
        assert "chat_deleted" in stream.text, stream.text[-500:]
    else:
        assert_problem(stream, 404, "the reader pass")


async def test_shared_links_to_a_deleted_accounts_chats_stop_opening_and_others_keep_theirs(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    team = await team_project(chat, bob, alice, "editor")
    hers = await chat.start(alice["auth"], model="dev/echo", message="alice's own")
    in_team = await chat.start(alice["auth"], model="dev/echo", message="in bob's", projectId=team)
    his = await chat.start(bob["auth"], model="dev/echo", message="bob's own", projectId=team)
    for started in (hers, in_team, his):
        await chat.events(started["sessionId"])

    async def share(auth: dict[str, str], chat_id: str) -> str:
        made = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=auth)
        assert made.status_code == 201, made.text
        url: str = made.json()["url"]
        return url

    links = [
        await share(alice["auth"], hers["chatId"]),
        await share(bob["auth"], in_team["chatId"]),  # bob, the owner, shares her chat
        await share(bob["auth"], his["chatId"]),
    ]
    assert [(await chat.client.get(u)).status_code for u in links] == [200, 200, 200]

    assert (await delete_me(chat, alice["auth"], password=PASSWORD)).status_code == 204

    assert [(await chat.client.get(u)).status_code for u in links] == [404, 404, 200]


async def test_the_openapi_document_describes_the_deletion_body(chat: Chat) -> None:
    document = (await chat.client.get("/api/docs/openapi.json")).json()
    operation = document["paths"]["/api/auth/me"]["delete"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"password", "email"} <= set(schema["properties"])
    assert operation["security"] == [{"accessToken": []}]


async def test_the_only_two_admins_deleting_themselves_at_once_leave_one_admin(
    stack_urls: StackUrls, own_database: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_DATABASE_URL=own_database) as chat:
        first, second = await chat.world.create_admin(), await chat.world.create_admin()

        answers = await asyncio.gather(
            delete_me(chat, first, password=PASSWORD), delete_me(chat, second, password=PASSWORD)
        )

        assert sorted(a.status_code for a in answers) == [204, 409], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 409)
        assert refused.json()["code"] == "last_admin"
        alive = [await user_id_of(chat, auth) for auth in (first, second)]
        assert len([a for a in alive if a is not None]) == 1


async def test_a_member_added_while_the_account_is_deleted_is_not_left_behind(chat: Chat) -> None:
    bob = await chat.world.register("bob")
    alice = await chat.world.register("alice")
    created = await chat.client.post("/api/projects", json={"name": "T"}, headers=bob["auth"])
    project_id = created.json()["id"]

    deleted, added = await asyncio.gather(
        delete_me(chat, alice["auth"], password=PASSWORD),
        chat.client.post(
            f"/api/projects/{project_id}/members",
            json={"email": alice["email"], "role": "editor"}, headers=bob["auth"],
        ),
    )  # fmt: skip

    assert deleted.status_code == 204, deleted.text
    assert added.status_code in (201, 404), added.text
    members = await chat.client.get(f"/api/projects/{project_id}/members", headers=bob["auth"])
    assert alice["user"]["id"] not in members.text


async def test_the_openapi_document_describes_the_link_callbacks_answer(chat: Chat) -> None:
    document = (await chat.client.get("/api/docs/openapi.json")).json()
    operation = document["paths"]["/api/auth/oauth/{provider}/callback"]["get"]
    schemas = document["components"]["schemas"]

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return expand(schemas[node["$ref"].rsplit("/", 1)[1]])
            return {k: expand(v) for k, v in node.items()}
        if isinstance(node, list):
            return [expand(v) for v in node]
        return node

    answer = expand(operation["responses"]["200"])
    assert '"linked"' in json.dumps(answer), answer


async def test_the_account_says_whether_it_has_a_password(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    chat = oauth_chat
    with_password = await chat.world.register("pw")
    oauth_server.google_account = GoogleAccount(
        sub=f"g-{uuid.uuid4().hex}", email=f"{local_part('nopw')}@example.com"
    )
    signed_in = await oauth_sign_in(chat, "google")
    assert signed_in.status_code == 200, signed_in.text
    without = bearer(signed_in.json()["accessToken"])

    mine = (await chat.client.get("/api/auth/me", headers=with_password["auth"])).json()
    theirs = (await chat.client.get("/api/auth/me", headers=without)).json()

    assert (mine.get("hasPassword"), theirs.get("hasPassword")) == (True, False)


async def test_a_deleted_oauth_account_frees_its_provider_account_for_a_fresh_sign_up(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    chat = oauth_chat
    email = f"{local_part('gone')}@example.com"
    oauth_server.google_account = GoogleAccount(sub=f"g-{uuid.uuid4().hex}", email=email)
    first = await oauth_sign_in(chat, "google")
    assert first.status_code == 200, first.text
    auth = bearer(first.json()["accessToken"])
    first_id = await user_id_of(chat, auth)
    chat_started = await chat.start(auth, model="dev/echo", message="before deletion")
    await chat.events(chat_started["sessionId"])

    assert (await delete_me(chat, auth, email=email.upper())).status_code == 204

    again = await oauth_sign_in(chat, "google")
    assert again.status_code == 200, again.text
    fresh = bearer(again.json()["accessToken"])
    assert await user_id_of(chat, fresh) not in (None, first_id)
    assert (await chat.client.get("/api/chats", headers=fresh)).json()["items"] == []
    assert await links(chat, fresh) == [("google", email)]


async def test_an_api_key_stream_in_flight_when_its_account_is_deleted_ends_cleanly(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await chat.world.register("alice")
    key = await chat.client.post("/api/keys", json={"name": "cli"}, headers=alice["auth"])
    assert key.status_code == 201, key.text
    gate = asyncio.Event()  # the provider sends the rest once the account is gone
    chat.provider.script(Reply(chunks=openai_pieces(["first", " rest"]), gate=gate, gate_after=2))
    body = {
        "model": "openai/gpt-4o-mini", "stream": True,
        "messages": [{"role": "user", "content": f"doomed {uuid.uuid4()}"}],
    }  # fmt: skip

    with capture_logs() as logs:
        async with chat.client.stream(
            "POST", "/v1/chat/completions", json=body, headers=bearer(key.json()["secret"])
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            seen = [await anext(lines)]
            while "first" not in seen[-1]:
                seen.append(await anext(lines))
            deleted = await delete_me(chat, alice["auth"], password=PASSWORD)
            gate.set()
            seen += [line async for line in lines]

    assert deleted.status_code == 204, deleted.text
    data = [line for line in seen if line.startswith("data: ")]
    assert data[-1] == "data: [DONE]", seen
    assert "rest" in "".join(data)
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await user_id_of(chat, bearer(key.json()["secret"])) is None


# === linking a provider to a signed-in account ==================================================
async def test_a_link_callback_in_another_browser_links_nothing_and_spends_the_state(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    """Login CSRF for links: an attacker's link state, lured into a victim's browser (which has
    no binding cookie, or its own), must not tie the victim's provider account to anything."""
    chat = oauth_chat
    alice = await chat.world.register("alice")
    oauth_server.github_account = github_account(f"{local_part('gh')}@example.com")
    back, binding = await start_link(chat, alice["auth"], "github")
    own_started = await chat.client.post("/api/auth/oauth/google/link", headers=alice["auth"])
    other_browsers_cookie = _cookie(own_started)

    no_cookie = await callback(chat, back, None)
    assert_problem(no_cookie, 400, "no cookie")
    too_late = await callback(chat, back, binding)  # the state is spent
    assert_problem(too_late, 400, "spent state")

    back, binding = await start_link(chat, alice["auth"], "github")
    wrong_cookie = await callback(chat, back, other_browsers_cookie)
    assert_problem(wrong_cookie, 400, "another browser's cookie")
    assert await links(chat, alice["auth"]) == []


async def test_a_link_completes_after_its_session_refreshed_its_tokens_meanwhile(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    chat = oauth_chat
    alice = await chat.world.register("alice")
    email = f"{local_part('gh')}@example.com"
    oauth_server.github_account = github_account(email)
    back, binding = await start_link(chat, alice["auth"], "github")
    refreshed = await chat.client.post(
        "/api/auth/refresh", json={"refreshToken": alice["tokens"]["refreshToken"]}
    )
    assert refreshed.status_code == 200, refreshed.text

    done = await callback(chat, back, binding)

    assert done.status_code == 200, done.text
    assert done.json() == {"linked": "github"}
    assert await links(chat, bearer(refreshed.json()["accessToken"])) == [("github", email)]


async def test_a_link_whose_session_logged_out_or_account_was_deleted_links_nothing(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    chat = oauth_chat
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    oauth_server.github_account = github_account(f"{local_part('gh')}@example.com")
    back, binding = await start_link(chat, alice["auth"], "github")
    out = await chat.client.post(
        "/api/auth/logout", json={"refreshToken": alice["tokens"]["refreshToken"]}
    )
    assert out.status_code == 204, out.text
    body = assert_problem(await callback(chat, back, binding), 400, "logged out")
    assert "session" in body["detail"]

    back, binding = await start_link(chat, bob["auth"], "github")
    assert (await delete_me(chat, bob["auth"], password=PASSWORD)).status_code == 204
    assert_problem(await callback(chat, back, binding), 400, "account deleted")

    # the provider account was linked to nobody: it signs up on its own
    signed_in = await oauth_sign_in(chat, "github")
    assert signed_in.status_code == 200, signed_in.text
    new_id = await user_id_of(chat, bearer(signed_in.json()["accessToken"]))
    assert new_id not in (alice["user"]["id"], bob["user"]["id"])


async def test_a_provider_account_that_signed_up_on_its_own_is_not_linked_to_another(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    chat = oauth_chat
    oauth_server.google_account = GoogleAccount(
        sub=f"g-{uuid.uuid4().hex}", email=f"{local_part('own')}@example.com"
    )
    own = await oauth_sign_in(chat, "google")
    own_auth = bearer(own.json()["accessToken"])
    own_id = await user_id_of(chat, own_auth)
    alice = await chat.world.register("alice")

    refused = await link(chat, alice["auth"], "google")

    body = assert_problem(refused, 400, "linked elsewhere")
    assert "another account" in body["detail"]
    assert await links(chat, alice["auth"]) == []
    again = await oauth_sign_in(chat, "google")
    assert await user_id_of(chat, bearer(again.json()["accessToken"])) == own_id


async def test_link_routes_of_an_unconfigured_or_unknown_provider_answer_404_and_store_nothing(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")  # this app has no provider configured

    for provider in ("github", "myspace"):
        started = await chat.client.post(f"/api/auth/oauth/{provider}/link", headers=alice["auth"])
        assert_problem(started, 404, provider)
        assert "set-cookie" not in started.headers
        unlinked = await chat.client.delete(
            f"/api/auth/oauth/{provider}/link", headers=alice["auth"]
        )
        assert assert_problem(unlinked, 404, provider)["code"] == "provider_not_linked"
    assert await links(chat, alice["auth"]) == []


async def test_a_link_verifies_an_account_stored_under_the_ascii_spelling_of_its_domain(
    oauth_chat: Chat, oauth_server: FakeOAuthServer
) -> None:
    chat = oauth_chat
    local = local_part("legacy")
    registered = await register(chat, f"{local}@b\u00fccher.example")
    assert registered.status_code == 201, registered.text
    auth = bearer(registered.json()["tokens"]["accessToken"])
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:  # as accounts registered before domains were decoded hold it
        user = await uow.users.get(uuid.UUID(registered.json()["user"]["id"]))
        user.email = f"{local}@xn--bcher-kva.example"
        await uow.users.update(user)
        await uow.commit()
    await changed(chat.world.container, user.id)
    oauth_server.github_account = github_account(f"{local}@b\u00fccher.example")

    linked = await link(chat, auth, "github")

    assert linked.status_code == 200, linked.text
    me = (await chat.client.get("/api/auth/me", headers=auth)).json()
    assert me["emailVerified"] is True
