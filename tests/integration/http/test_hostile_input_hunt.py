"""A hunt for hostile or odd input reaching the HTTP API: NUL and other control characters,
lone UTF-16 surrogate escapes, wrong JSON types, numbers out of range, deep nesting, forged
pagination cursors, tsquery syntax in search, odd session ids and ``Last-Event-ID`` headers,
other users' ids, and ChatGPT imports whose titles would break a ``Content-Disposition``
header. Each request was sent raw (the body bytes as written, so ``"\\ud800"`` arrives escaped)
to the real app on Postgres, Redis and S3 with a fake provider on loopback; what should come
back is a 4xx RFC 9457 problem naming what was wrong, with nothing written. Kept as a
regression suite: it found NUL in account, project, key and member fields reaching Postgres (a
422 naming nothing), a control character in an email, control characters kept in titles made
from a first message or an import, duplicate attachment ids counted twice, numbers out of range
refused without their field, query errors naming Python parameters, a surrogate hidden behind
an escaped backslash, a live stream resumed after a forged future ``Last-Event-ID`` ending
without a final event, and numbers sent as JSON strings coerced (Litestar converts bodies
leniently), all fixed since."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.http.test_chat_flow import Chat, _read_events
from tests.integration.http.test_new_features_hunt import _extracted_file
from tests.support.fake_providers import Reply, openai_stream
from tests.unit.test_chatgpt_export import conversation, message

MODEL = "openai/gpt-4o-mini"
PASSWORD = "Sup3r-secret-pw!"
NUL = "\\u0000"  # as written in a JSON body
SURROGATE = "\\ud800"
T = 1_700_000_000.0


# === helpers ====================================================================================
async def send(
    chat: Chat, method: str, url: str, body: str | bytes | None = None,
    auth: dict[str, str] | None = None, **headers: str,
) -> httpx.Response:  # fmt: skip
    """The body exactly as given (raw JSON text), with a JSON content type."""
    sent = {**(auth or {}), "Content-Type": "application/json", **headers}
    return await chat.client.request(method, url, content=body, headers=sent)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 body of a ``status`` answer."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def names(body: dict[str, Any], field: str) -> bool:
    """Whether a problem names ``field`` (a domain 422's ``field``, a 400's ``errors`` keys)."""
    keys = [body.get("field")] + [e.get("key") for e in body.get("errors", [])]
    return field in keys


def control_free(text: str) -> bool:
    """No control character (category Cc), which a rename refuses in a title."""
    return not any(unicodedata.category(ch) == "Cc" for ch in text)


async def finished_chat(chat: Chat, auth: dict[str, str], text: str = "Hello") -> dict[str, Any]:
    """A chat with one finished reply: its detail."""
    started = await chat.start(auth, model=MODEL, message=text)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=auth)
    assert read.status_code == 200, read.text
    detail: dict[str, Any] = read.json()
    detail["sessionId"] = started["sessionId"]
    return detail


def one_conversation(title: str) -> dict[str, Any]:
    return conversation(
        [("a", None, message("user", "question", at=T)),
         ("b", "a", message("assistant", "answer", at=T + 1))],
        current="b", title=title,
    )  # fmt: skip


async def chat_ids(chat: Chat, auth: dict[str, str]) -> set[str]:
    listed = await chat.client.get("/api/chats?limit=100", headers=auth)
    assert listed.status_code == 200, listed.text
    return {c["id"] for c in listed.json()["items"]}


# === NUL and lone surrogates in the chat API: refused, naming the field ==========================
async def test_nul_in_each_chat_text_field_is_a_422_naming_it_and_writes_nothing(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    detail = await finished_chat(chat, auth)
    chat_id, reply_id = detail["id"], detail["messages"][-1]["id"]
    before = await chat_ids(chat, auth)
    start = f'"model":"{MODEL}","message":"hi"'
    cases = [
        ("POST", "/api/chat/start", f'{{"model":"{MODEL}","message":"a{NUL}b"}}', "message"),
        ("POST", "/api/chat/start", f'{{{start},"systemPrompt":"a{NUL}b"}}', "systemPrompt"),
        ("PATCH", f"/api/chats/{chat_id}", f'{{"title":"a{NUL}b"}}', "title"),
        ("PATCH", f"/api/chats/{chat_id}", f'{{"systemPrompt":"a{NUL}b"}}', "systemPrompt"),
        ("POST", f"/api/chats/{chat_id}/fork", f'{{"title":"a{NUL}b"}}', "title"),
        ("POST", "/api/presets", f'{{"name":"a{NUL}b","model":"{MODEL}"}}', "name"),
        ("POST", "/api/presets", f'{{"name":"p","model":"{MODEL}","systemPrompt":"{NUL}"}}',
         "systemPrompt"),
        ("POST", "/api/presets", f'{{"name":"p","model":"{MODEL}","params":{{"stop":["{NUL}"]}}}}',
         "params.stop"),
        ("PUT", f"/api/chats/{chat_id}/messages/{reply_id}/feedback",
         f'{{"rating":"up","comment":"a{NUL}b"}}', "comment"),
        ("PATCH", "/api/auth/me", f'{{"customInstructions":"a{NUL}b"}}', "customInstructions"),
        ("POST", "/api/chat/regenerate", f'{{"chatId":"{chat_id}","message":"a{NUL}b"}}',
         "message"),
    ]  # fmt: skip
    for method, url, body, field in cases:
        answer = problem(await send(chat, method, url, body, auth), 422)
        assert names(answer, field), (url, field, answer)
    assert await chat_ids(chat, auth) == before
    read = (await chat.client.get(f"/api/chats/{chat_id}", headers=auth)).json()
    assert (read["title"], read["systemPrompt"], len(read["messages"])) == ("Hello", None, 2)
    assert (await chat.client.get("/api/presets", headers=auth)).json() == []


async def test_a_lone_surrogate_escape_in_any_chat_body_is_a_400_saying_so(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    detail = await finished_chat(chat, auth)
    chat_id, reply_id = detail["id"], detail["messages"][-1]["id"]
    doc = json.dumps({"format": "chatgpt", "conversations": [one_conversation("@T@")]})
    cases = [
        ("POST", "/api/chat/start", f'{{"model":"{MODEL}","message":"a{SURROGATE}b"}}'),
        ("POST", "/api/chat/start",
         f'{{"model":"{MODEL}","message":"hi","params":{{"stop":["{SURROGATE}"]}}}}'),
        ("PATCH", f"/api/chats/{chat_id}", f'{{"title":"{SURROGATE}"}}'),
        ("POST", f"/api/chats/{chat_id}/fork", f'{{"title":"{SURROGATE}"}}'),
        ("PUT", f"/api/chats/{chat_id}/messages/{reply_id}/feedback",
         '{"rating":"up","comment":"\\udc00"}'),
        ("PATCH", "/api/auth/me", f'{{"customInstructions":"x{SURROGATE}"}}'),
        ("POST", "/api/chats/import", doc.replace("@T@", SURROGATE)),
    ]  # fmt: skip
    for method, url, body in cases:
        answer = problem(await send(chat, method, url, body, auth), 400)
        assert "surrogate" in answer["detail"], (url, answer)
    assert await chat_ids(chat, auth) == {chat_id}


async def test_a_lone_surrogate_after_an_escaped_backslash_is_named_as_such(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    # the text `a\` then a lone high surrogate: JSON `"a\\\ud800"`
    body = f'{{"model":"{MODEL}","message":"a\\\\{SURROGATE}"}}'
    answer = problem(await send(chat, "POST", "/api/chat/start", body, alice["auth"]), 400)
    assert "surrogate" in answer["detail"], answer


async def test_nul_and_surrogates_in_the_search_query_find_nothing_without_failing(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await finished_chat(chat, alice["auth"], "needle in a haystack")
    for q in ("a%00b", "%00", "x%ED%A0%80y", "%FF%FE", "needle%00"):
        response = await chat.client.get(f"/api/chats/search?q={q}", headers=alice["auth"])
        assert response.status_code in (200, 400, 422), (q, response.text)
        if response.status_code == 200:
            assert isinstance(response.json(), list)
        else:
            assert names(problem(response, response.status_code), "q"), response.text


# === the same characters outside the chat routes ================================================
@pytest.mark.parametrize(
    ("method", "url", "template", "field"),
    [
        ("PATCH", "/api/auth/me", '{"name":"a@NUL@b"}', "name"),
        ("POST", "/api/auth/register",
         '{"email":"@EMAIL@","password":"@PW@","name":"a@NUL@b"}', "name"),
        ("POST", "/api/auth/register", '{"email":"a@NUL@@EMAIL@","password":"@PW@"}', "email"),
        ("POST", "/api/projects", '{"name":"a@NUL@b"}', "name"),
        ("PATCH", "/api/projects/@PROJECT@", '{"name":"a@NUL@b"}', "name"),
        ("POST", "/api/projects/@PROJECT@/members",
         '{"email":"a@NUL@@EMAIL@","role":"viewer"}', "email"),
        ("POST", "/api/keys", '{"name":"a@NUL@b"}', "name"),
    ],
    ids=["account-name", "register-name", "register-email", "project-name", "project-rename",
         "member-email", "api-key-name"],
)  # fmt: skip
async def test_nul_in_an_account_or_project_field_is_a_422_naming_it(
    chat: Chat, method: str, url: str, template: str, field: str
) -> None:
    alice = await chat.world.register("alice")
    project = await chat.client.post("/api/projects", json={"name": "P"}, headers=alice["auth"])
    assert project.status_code == 201, project.text
    email = f"n{uuid.uuid4().hex[:8]}@example.com"
    body = template.replace("@NUL@", NUL).replace("@EMAIL@", email).replace("@PW@", PASSWORD)
    url = url.replace("@PROJECT@", project.json()["id"])
    answer = problem(await send(chat, method, url, body, alice["auth"]), 422)
    assert names(answer, field), answer


async def test_a_registration_refused_for_a_nul_writes_no_account(chat: Chat) -> None:
    email = f"n{uuid.uuid4().hex[:8]}@example.com"
    refused = await send(
        chat, "POST", "/api/auth/register",
        f'{{"email":"{email}","password":"{PASSWORD}","name":"a{NUL}b"}}',
    )  # fmt: skip
    assert 400 <= refused.status_code < 500, refused.text
    again = await chat.client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "ok"}
    )
    assert again.status_code == 201, again.text  # the email was still free


async def test_a_login_with_nul_in_the_email_is_refused_as_wrong_credentials(chat: Chat) -> None:
    body = f'{{"email":"a{NUL}b@example.com","password":"{PASSWORD}"}}'
    response = await send(chat, "POST", "/api/auth/login", body)
    if response.status_code == 422:
        assert names(problem(response, 422), "email"), response.text
    else:
        assert problem(response, 401)["code"] == "invalid_credentials"


async def test_an_email_with_a_control_character_is_refused_at_registration(chat: Chat) -> None:
    body = f'{{"email":"a\\u0007{uuid.uuid4().hex[:8]}@example.com","password":"{PASSWORD}"}}'
    answer = problem(await send(chat, "POST", "/api/auth/register", body), 422)
    assert names(answer, "email"), answer


# === titles =====================================================================================
async def test_a_title_with_a_control_character_is_refused_by_a_rename(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    detail = await finished_chat(chat, alice["auth"])
    url = f"/api/chats/{detail['id']}"
    for title in ("a\\u0007b", "a\\u001bb", "a\\u007fb"):
        response = await send(chat, "PATCH", url, f'{{"title":"{title}"}}', alice["auth"])
        assert names(problem(response, 422), "title"), response.text
    # U+0085 (NEL) is whitespace: folded to a space, as a line break is
    folded = await send(chat, "PATCH", url, '{"title":"a\\u0085b\\r\\nc"}', alice["auth"])
    assert folded.status_code == 200, folded.text
    assert folded.json()["title"] == "a b c"


async def test_a_title_taken_from_the_first_message_has_no_control_characters(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    detail = await finished_chat(chat, alice["auth"], "ring \u0007 the \u202ebell\u200b now")
    assert control_free(detail["title"]), repr(detail["title"])
    # and a fork keeps it as the chat's own title
    fork = await chat.client.post(f"/api/chats/{detail['id']}/fork", json={}, headers=alice["auth"])
    assert fork.status_code == 201, fork.text
    assert control_free(fork.json()["title"]), repr(fork.json()["title"])


async def test_an_imported_title_has_no_control_characters(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.post(
        "/api/chats/import", headers=alice["auth"],
        json={"format": "chatgpt", "conversations": [one_conversation("\u0007ring \u202ebell")]},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    title = response.json()["imported"][0]["title"]
    assert control_free(title), repr(title)


_DISPOSITION = re.compile(
    r"""attachment; filename="[ -~]*"; filename\*=UTF-8''[A-Za-z0-9%!#$&+^`|._~-]+"""
)


_HOSTILE_TITLES = [
    "a\r\nSet-Cookie: x=1", 'q"uote; filename="evil.exe', "été 日本語 ✓", "L" * 5000,
    "../../etc/passwd", "\u0007\u202efdp.exe", "%0d%0a; x", "   ",
]  # fmt: skip


async def test_an_exported_chat_is_named_by_a_valid_content_disposition(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    imported = await chat.client.post(
        "/api/chats/import", headers=alice["auth"],
        json={"format": "chatgpt", "conversations": [one_conversation(t) for t in _HOSTILE_TITLES]},
    )  # fmt: skip
    assert imported.status_code == 201, imported.text
    assert len(imported.json()["imported"]) == len(_HOSTILE_TITLES)
    for made in imported.json()["imported"]:
        for query in ("", "?format=json"):
            url = f"/api/chats/{made['chatId']}/export{query}"
            export = await chat.client.get(url, headers=alice["auth"])
            assert export.status_code == 200, export.text
            disposition = export.headers["content-disposition"]
            assert _DISPOSITION.fullmatch(disposition), disposition
            assert "set-cookie" not in export.headers
            assert len(disposition.encode()) < 2_000


# === wrong types, odd numbers and malformed bodies ==============================================
async def test_malformed_bodies_are_400_problems_and_start_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    valid = f'{{"model":"{MODEL}","message":"hi"}}'
    bodies: list[str | bytes] = [
        "", "null", "[]", "{", valid + " x", "[" * 10_000 + "]" * 10_000,
        f'{{"model":"{MODEL}","message":"hi","params":' + '{"a":' * 5_000 + "1" + "}" * 5_001,
        f'{{"model":"{MODEL}","message":"hi","params":{{"temperature":NaN}}}}',
        f'{{"model":"{MODEL}","message":"\xff\xfe"}}'.encode("latin-1"),
    ]  # fmt: skip
    for body in bodies:
        problem(await send(chat, "POST", "/api/chat/start", body, auth), 400)
    assert await chat_ids(chat, auth) == set()


async def test_wrong_types_and_out_of_range_parameters_are_400s_naming_them(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    start = f'"model":"{MODEL}","message":"hi"'
    cases = [
        (f'{{{start},"params":{{"maxTokens":{2**70}}}}}', "params.maxTokens"),
        (f'{{{start},"params":{{"seed":{2**70}}}}}', "params.seed"),
        (f'{{{start},"params":{{"maxTokens":0}}}}', "params.maxTokens"),
        (f'{{{start},"params":{{"maxTokens":-1}}}}', "params.maxTokens"),
        (f'{{{start},"params":{{"maxTokens":true}}}}', "params.maxTokens"),
        (f'{{{start},"params":{{"maxTokens":1.5}}}}', "params.maxTokens"),
        (f'{{{start},"params":{{"temperature":[1]}}}}', "params.temperature"),
        (f'{{{start},"params":{{"temperature":3}}}}', "params.temperature"),
        (f'{{{start},"params":{{"stop":"x"}}}}', "params.stop"),
        (f'{{{start},"params":{{"stop":[]}}}}', "params.stop"),
        (f'{{{start},"params":[]}}', "params"),
        (f'{{"model":"{MODEL}","message":5}}', "message"),
        (f'{{"model":"{MODEL}","message":["hi"]}}', "message"),
        (f'{{{start},"attachmentIds":["not-a-uuid"]}}', "attachmentIds[0]"),
        (f'{{{start},"attachmentIds":[{",".join(json.dumps(str(uuid.uuid4())) for _ in range(10_000))}]}}',  # noqa: E501
         "attachmentIds"),
        (f'{{{start},"chatId":"../x"}}', "chatId"),
    ]  # fmt: skip
    for body, field in cases:
        answer = problem(await send(chat, "POST", "/api/chat/start", body, auth), 400)
        assert names(answer, field), (field, answer)
    assert await chat_ids(chat, auth) == set()


async def test_a_number_out_of_range_is_a_400_naming_the_field(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    body = f'{{"model":"{MODEL}","message":"hi","params":{{"temperature":1e309}}}}'
    answer = problem(await send(chat, "POST", "/api/chat/start", body, alice["auth"]), 400)
    assert "temperature" in json.dumps(answer), answer


async def test_a_number_sent_as_a_string_is_a_400(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    body = f'{{"model":"{MODEL}","message":"hi","params":{{"temperature":"0.5"}}}}'
    answer = problem(await send(chat, "POST", "/api/chat/start", body, alice["auth"]), 400)
    assert names(answer, "params.temperature"), answer
    assert await chat_ids(chat, alice["auth"]) == set()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ('"cache":"false"', "cache"),  # a boolean as a string
        ('"params":{"maxTokens":"50"}', "params.maxTokens"),  # an integer as a string
        ('"params":{"maxTokens":50.0}', "params.maxTokens"),  # an integer as a decimal
        ('"params":{"seed":true}', "params.seed"),  # a boolean for an integer
    ],
)
async def test_a_value_of_another_json_type_is_a_400_naming_it(
    chat: Chat, fields: str, field: str
) -> None:
    alice = await chat.world.register("alice")
    body = f'{{"model":"{MODEL}","message":"hi",{fields}}}'
    answer = problem(await send(chat, "POST", "/api/chat/start", body, alice["auth"]), 400)
    assert names(answer, field), answer
    assert await chat_ids(chat, alice["auth"]) == set()
    # the same values with their JSON types are taken
    typed = body.replace('"false"', "false").replace('"50"', "50").replace("50.0", "50")
    typed = typed.replace('"seed":true', '"seed":7')
    started = await send(chat, "POST", "/api/chat/start", typed, alice["auth"])
    assert started.status_code == 201, started.text


async def test_a_body_over_the_limit_is_a_413_problem(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    body = f'{{"model":"{MODEL}","message":"{"a" * (25 * 1024 * 1024)}"}}'
    response = await send(chat, "POST", "/api/chat/start", body, alice["auth"])
    problem(response, 413)
    assert await chat_ids(chat, alice["auth"]) == set()


# === ids, cursors, limits and queries ===========================================================
async def test_another_users_chat_is_404_on_every_route(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    detail = await finished_chat(chat, bob["auth"])
    chat_id, reply_id = detail["id"], detail["messages"][-1]["id"]
    routes = [
        ("GET", f"/api/chats/{chat_id}", None),
        ("GET", f"/api/chats/{chat_id}/export", None),
        ("PATCH", f"/api/chats/{chat_id}", '{"title":"mine"}'),
        ("DELETE", f"/api/chats/{chat_id}", None),
        ("POST", f"/api/chats/{chat_id}/fork", "{}"),
        ("POST", f"/api/chats/{chat_id}/shares", "{}"),
        ("GET", f"/api/chats/{chat_id}/shares", None),
        ("PUT", f"/api/chats/{chat_id}/messages/{reply_id}/feedback", '{"rating":"up"}'),
        ("POST", "/api/chat/start", f'{{"chatId":"{chat_id}","model":"{MODEL}","message":"x"}}'),
        ("POST", "/api/chat/regenerate", f'{{"chatId":"{chat_id}"}}'),
    ]
    for method, url, body in routes:
        problem(await send(chat, method, url, body, alice["auth"]), 404)
    again = await chat.client.get(f"/api/chats/{chat_id}", headers=bob["auth"])
    assert (again.json()["title"], len(again.json()["messages"])) == ("Hello", 2)


async def test_a_bad_limit_or_forged_cursor_is_a_422_naming_it(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    queries = [
        "limit=0", "limit=-1", "limit=1000000000", "limit=99999999999999999999999",
        "cursor=abc", "cursor=%00", "cursor=" + "A" * 5000, "cursor=eyJ0IjoieCIsImlkIjoieSJ9",
        "cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "cursor=////////////////////////////////",
    ]  # fmt: skip
    for query in queries:
        response = await chat.client.get(f"/api/chats?{query}", headers=alice["auth"])
        assert names(problem(response, 422), query.split("=")[0]), response.text


async def test_a_cursor_of_another_users_list_shows_none_of_their_chats(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    for text in ("one", "two"):
        await finished_chat(chat, bob["auth"], text)
    page = await chat.client.get("/api/chats?limit=1", headers=bob["auth"])
    cursor = page.json()["nextCursor"]
    assert cursor
    mine = await chat.client.get(f"/api/chats?limit=5&cursor={cursor}", headers=alice["auth"])
    assert mine.status_code in (200, 422), mine.text
    if mine.status_code == 200:
        assert mine.json()["items"] == []


async def test_a_malformed_query_parameter_is_named_as_sent(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    listed = await chat.client.get("/api/chats?projectId=nope", headers=alice["auth"])
    usage = await chat.client.get("/api/usage?from=2026-13-01", headers=alice["auth"])
    named = (names(problem(listed, 400), "projectId"), names(problem(usage, 400), "from"))
    assert named == (True, True), (listed.text, usage.text)


async def test_another_users_project_is_404_for_listing_starting_and_importing(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    created = await chat.client.post("/api/projects", json={"name": "B"}, headers=bob["auth"])
    project_id = created.json()["id"]
    doc = {"format": "chatgpt", "conversations": [one_conversation("t")], "projectId": project_id}
    answers = [
        await chat.client.get(f"/api/chats?projectId={project_id}", headers=alice["auth"]),
        await chat.client.post("/api/chat/start", headers=alice["auth"],
                               json={"model": MODEL, "message": "x", "projectId": project_id}),
        await chat.client.post("/api/chats/import", json=doc, headers=alice["auth"]),
    ]  # fmt: skip
    for answer in answers:
        problem(answer, 404)
    listed = await chat.client.get(f"/api/chats?projectId={project_id}", headers=bob["auth"])
    assert listed.json()["items"] == []


async def test_search_takes_tsquery_syntax_as_plain_words(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    detail = await finished_chat(chat, alice["auth"], "needle in a haystack")
    queries = [
        "", "!!!", "a & | !", ":*", "'", "a:*", "(((", "a <-> b", "\\", "%25", "'a' & !'b'",
        "needle:A", "x" * 500,
    ]  # fmt: skip
    for q in queries:
        response = await chat.client.get(
            "/api/chats/search", params={"q": q}, headers=alice["auth"]
        )
        assert response.status_code == 200, (q, response.text)
        assert isinstance(response.json(), list)
    for q in ("needle & !", "needle:*", "(needle", "'needle'"):
        response = await chat.client.get(
            "/api/chats/search", params={"q": q}, headers=alice["auth"]
        )
        assert [h["chatId"] for h in response.json()] == [detail["id"]], (q, response.text)


async def test_a_search_query_too_long_is_a_422_naming_q(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.get(
        "/api/chats/search", params={"q": "x" * 60_000}, headers=alice["auth"]
    )
    assert names(problem(response, 422), "q"), response.text


# === stream sessions and Last-Event-ID ==========================================================
async def test_odd_session_ids_are_404_or_400_problems(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    for session_id in ("", "..", "a%0Ab", "%00", "x" * 256, "../../etc", "%E2%80%AE"):
        stream = await chat.client.get(
            f"/api/chat/stream?sessionId={session_id}", headers=alice["auth"]
        )
        problem(stream, 404)
    problem(await chat.client.get("/api/chat/stream?sessionId=" + "x" * 257), 400)
    for session_id in ("a%0Ab", "%00", "x" * 300):
        stop = await chat.client.post(
            f"/api/chat/sessions/{session_id}/stop", headers=alice["auth"]
        )
        problem(stop, 404)


async def test_a_garbage_last_event_id_is_a_422_before_the_stream(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    detail = await finished_chat(chat, alice["auth"])
    url = "/api/chat/stream"
    session = {"sessionId": detail["sessionId"]}
    garbage = [
        "garbage", "-1", "99999999999999999999999999", "1-2-3", "1e5",
        "1-99999999999999999999999", "0x10", "１２３",
    ]  # fmt: skip
    for last_event_id in garbage:
        if last_event_id.isascii():  # (a header is ASCII; the query parameter takes any text)
            headers = {**alice["auth"], "Last-Event-ID": last_event_id}
            problem(await chat.client.get(url, params=session, headers=headers), 422)
        response = await chat.client.get(
            url, params={**session, "lastEventId": last_event_id}, headers=alice["auth"]
        )
        problem(response, 422)


async def test_a_last_event_id_of_another_session_replays_nothing_of_it(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    bobs = await chat.start(bob["auth"], model=MODEL, message="bob's secret")
    bob_events = await chat.events(bobs["sessionId"])
    alices = await chat.start(alice["auth"], model=MODEL, message="alice asks")
    alice_events = await chat.events(alices["sessionId"])
    # resuming alice's stream after an id of bob's: only alice's events, or nothing at all
    first_of_bob = bob_events[0][0]
    assert first_of_bob
    async with chat.client.stream(
        "GET", f"/api/chat/stream?sessionId={alices['sessionId']}",
        headers={**alice["auth"], "Last-Event-ID": first_of_bob},
    ) as response:  # fmt: skip
        assert response.status_code in (200, 204), await response.aread()
        text = (await response.aread()).decode()
    ids = {event_id for event_id, _, _ in alice_events}
    sent = set(re.findall(r"^id: (.+)$", text, re.MULTILINE))
    assert sent <= ids, (sent, ids)


# === attachments ================================================================================
async def _personal_project(chat: Chat, user: dict[str, Any]) -> str:
    projects = await chat.client.get("/api/projects", headers=user["auth"])
    assert projects.status_code == 200, projects.text
    personal: str = next(p["id"] for p in projects.json() if p["personal"])
    return personal


async def test_an_attachment_named_twice_is_refused_or_counted_once(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    project_id = await _personal_project(chat, alice)
    file_id = await _extracted_file(chat, alice, project_id, f"budget {uuid.uuid4().hex}")
    response = await chat.client.post(
        "/api/chat/start", headers=alice["auth"],
        json={"model": MODEL, "message": "sum it up", "attachmentIds": [file_id, file_id]},
    )  # fmt: skip
    if response.status_code != 201:
        assert names(problem(response, 422), "attachmentIds"), response.text
        return
    await chat.events(response.json()["sessionId"])
    read = await chat.client.get(f"/api/chats/{response.json()['chatId']}", headers=alice["auth"])
    assert read.json()["messages"][0]["attachmentIds"] == [file_id]
    sent = json.dumps(chat.provider.requests[-1].body)
    assert sent.count("budget ") == 1, sent


async def test_another_users_file_among_attachments_is_404_and_starts_nothing(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    mine = await _extracted_file(chat, alice, await _personal_project(chat, alice), "mine")
    theirs = await _extracted_file(chat, bob, await _personal_project(chat, bob), "bob's")
    for ids in ([theirs], [mine, theirs], [theirs, mine], [str(uuid.uuid4())]):
        response = await chat.client.post(
            "/api/chat/start", headers=alice["auth"],
            json={"model": MODEL, "message": "x", "attachmentIds": ids},
        )  # fmt: skip
        problem(response, 404)
    assert await chat_ids(chat, alice["auth"]) == set()
    assert not any("bob's" in json.dumps(r.body) for r in chat.provider.requests)


async def test_a_live_stream_resumed_after_a_forged_future_id_still_ends_with_a_final_event(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    gate = asyncio.Event()  # the provider holds the reply after its first piece until set
    chat.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=2))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}")
    first = await chat.events(started["sessionId"], limit=1)  # the reply is live
    assert first[0][1] == "token"
    forged = "18446744073709551615-18446744073709551615"  # a valid id, after every real one
    async with chat.client.stream(
        "GET", "/api/chat/stream", params={"sessionId": started["sessionId"]},
        headers={**alice["auth"], "Last-Event-ID": forged},
    ) as response:  # fmt: skip
        gate.set()
        if response.status_code != 200:  # refusing the forged id is fine too
            await response.aread()
            problem(response, response.status_code)
            return
        events = await _read_events(response, None)
    assert events, "the stream ended without any event"
    assert events[-1][1] in ("done", "error"), events
