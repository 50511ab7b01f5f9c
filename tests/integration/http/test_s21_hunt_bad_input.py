"""Hunt (s21): every HTTP route against bad input, on the real app (Postgres, Redis, S3) with a
fake OpenAI-compatible provider on loopback.

The routes come from ``/api/docs/openapi.json``. Each takes hostile variants of its valid
request: bodies that are not JSON, not UTF-8, nested 5,000 deep or carry a lone surrogate
escape; each field as NUL text, a lone surrogate, ``1e309``, ``NaN``, ``2**64``, a nested array
or a 2 MB string; bad ids in every path parameter; malformed, repeated and out-of-range query
parameters; hostile multipart uploads; missing or broken credentials. What must come back is a
4xx RFC 9457 problem (``application/problem+json`` with type, title, status and detail), or
under ``/v1`` OpenAI's ``{"error": {...}}``, with nothing written.

The routes held up well; the defects found are in what some errors say (``xfail`` below)."""

from __future__ import annotations

import base64
import json
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_hostile_input_hunt import finished_chat, one_conversation
from tests.integration.http.test_identity_end_to_end import PASSWORD

MODEL = "openai/gpt-4o-mini"
PROBLEM_KEYS = ("type", "title", "status", "detail")


# === helpers ====================================================================================
def assert_problem(response: httpx.Response, label: str = "") -> dict[str, Any]:
    """A 4xx RFC 9457 problem whose status matches the response's."""
    where = f"{label}: {response.status_code} {response.text[:300]}"
    assert 400 <= response.status_code < 500, where
    assert response.headers["content-type"].startswith("application/problem+json"), where
    body: dict[str, Any] = response.json()
    assert all(k in body for k in PROBLEM_KEYS), where
    assert body["status"] == response.status_code, where
    assert isinstance(body["detail"], str), where
    assert body["detail"], where
    return body


def assert_openai_error(response: httpx.Response, label: str = "") -> dict[str, Any]:
    """A 4xx in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``."""
    where = f"{label}: {response.status_code} {response.text[:300]}"
    assert 400 <= response.status_code < 500, where
    assert response.headers["content-type"].startswith("application/json"), where
    error: dict[str, Any] = response.json()["error"]
    assert {"message", "type", "code", "param"} <= error.keys(), where
    assert isinstance(error["message"], str), where
    assert error["message"], where
    return error


def assert_refused(response: httpx.Response, label: str, v1: bool) -> None:
    if v1:
        assert_openai_error(response, label)
    else:
        assert_problem(response, label)


def assert_answered(response: httpx.Response, label: str, v1: bool = False) -> None:
    """Any answer but a server error; an error in the route's error shape."""
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert_refused(response, label, v1)


def _huge() -> str:
    return json.dumps("x" * 2_000_000)


# a JSON value (as written) that every field of every route must refuse
FIELD_VALUES = {
    "nul": '"a\\u0000b"',
    "surrogate": '"\\ud800"',
    "1e309": "1e309",
    "NaN": "NaN",
    "Infinity": "-Infinity",
    "2**64": str(2**64),
    "deep": "[" * 5_000 + "]" * 5_000,
    "huge": "@HUGE@",
}
# a whole body that every JSON route must refuse
RAW_BODIES: dict[str, bytes] = {
    "empty": b"",
    "null": b"null",
    "array": b"[]",
    "string": b'"s"',
    "truncated": b"{",
    "not-json": b"not json",
    "trailing": b'{"a":1} x',
    "deep": b"[" * 10_000 + b"]" * 10_000,
    "deep-object": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "latin-1": b'{"a":"\xff\xfe"}',
    "utf-16": '{"a":"b"}'.encode("utf-16"),
    "surrogate": b'{"a":"\\udc00"}',
}


def hostile_bodies(
    valid: dict[str, Any], taken: frozenset[str] = frozenset()
) -> list[tuple[str, bytes]]:
    """(label, body) of every raw body and, for each field, each refused value; but those
    ``taken`` (labels a route accepts by design)."""
    out = [(f"raw {name}", body) for name, body in RAW_BODIES.items()]
    for field in valid:
        for name, value in FIELD_VALUES.items():
            text = json.dumps({**valid, field: "@@"}).replace('"@@"', value)
            out.append((f"{field}={name}", text.replace("@HUGE@", _huge()).encode()))
    return [(label, body) for label, body in out if label not in taken]


# what a route takes by design: a body of its own is optional (none, or JSON null, is the
# defaults); logging out an unknown refresh token (any text) is done, as it is already
OPTIONAL_BODY = frozenset({"raw empty", "raw null"})
TAKEN = {"fork": OPTIONAL_BODY, "share": OPTIONAL_BODY, "logout": frozenset({"refreshToken=nul"})}


async def send(
    chat: Chat, method: str, url: str, body: bytes | str | None, headers: dict[str, str]
) -> httpx.Response:
    return await chat.client.request(
        method, url, content=body, headers={**headers, "Content-Type": "application/json"}
    )


class World:
    """One user with a finished chat, a shared project, a preset, a share, an API key and a
    file; an admin; a second user (a member of the project)."""

    chat_id: str
    reply_id: str
    user_message_id: str
    project_id: str
    preset_id: str
    share: dict[str, Any]
    key: dict[str, Any]
    file_id: str

    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    async def build(self) -> World:
        c = self.chat.client
        self.alice = await self.chat.world.register("alice")
        self.bob = await self.chat.world.register("bob")
        self.admin = await self.chat.world.create_admin()
        self.auth = self.alice["auth"]
        detail = await finished_chat(self.chat, self.auth)
        self.chat_id = detail["id"]
        self.user_message_id, self.reply_id = (m["id"] for m in detail["messages"])
        project = await c.post("/api/projects", json={"name": "P"}, headers=self.auth)
        self.project_id = project.json()["id"]
        member = {"email": self.bob["email"], "role": "viewer"}
        members = f"/api/projects/{self.project_id}/members"
        added = await c.post(members, json=member, headers=self.auth)
        assert added.status_code == 201, added.text
        preset = await c.post("/api/presets", json={"name": "p", "model": MODEL}, headers=self.auth)
        self.preset_id = preset.json()["id"]
        share = await c.post(f"/api/chats/{self.chat_id}/shares", json={}, headers=self.auth)
        self.share = share.json()
        self.key = (await c.post("/api/keys", json={"name": "k"}, headers=self.auth)).json()
        self.v1 = {"Authorization": f"Bearer {self.key['secret']}"}
        upload = await c.post(
            "/api/files/upload",
            files={"file": ("a.txt", b"hello", "text/plain")},
            headers=self.auth,
        )  # fmt: skip
        assert upload.status_code == 201, upload.text
        self.file_id = upload.json()["id"]
        return self

    async def state(self) -> dict[str, Any]:
        """What alice can read of her own data (a refused write must change none of it)."""
        urls = [
            "/api/chats?limit=100", "/api/chats?limit=100&archived=true",
            f"/api/chats/{self.chat_id}", f"/api/chats/{self.chat_id}/shares", "/api/projects",
            f"/api/projects/{self.project_id}",
            f"/api/projects/{self.project_id}/members", "/api/presets", "/api/files",
            "/api/auth/me",
        ]  # fmt: skip
        seen: dict[str, Any] = {}
        for url in urls:
            response = await self.chat.client.get(url, headers=self.auth)
            assert response.status_code == 200, (url, response.text)
            seen[url] = response.json()
        keys = (await self.chat.client.get("/api/keys", headers=self.auth)).json()
        seen["keys"] = sorted((k["id"], k["name"], k["revokedAt"]) for k in keys)
        return seen


@pytest.fixture
async def world(chat: Chat) -> World:
    return await World(chat).build()


# === every JSON body route: hostile bodies and fields are problems, nothing written =============
def body_routes(w: World) -> dict[str, tuple[str, str, dict[str, Any], dict[str, str]]]:
    auth = w.auth
    conversations = [one_conversation("t")]
    return {
        "account": ("PATCH", "/api/auth/me", {"name": "n", "customInstructions": "c"}, auth),
        "login": (
            "POST",
            "/api/auth/login",
            {"email": w.alice["email"], "password": "nope-nope"},
            {},
        ),
        "refresh": ("POST", "/api/auth/refresh", {"refreshToken": "abc"}, {}),
        "logout": ("POST", "/api/auth/logout", {"refreshToken": "abc"}, auth),
        "password": (
            "POST",
            "/api/auth/password",
            {"currentPassword": PASSWORD, "newPassword": "An0ther-secret-pw!"},
            auth,
        ),
        "chat-start": (
            "POST",
            "/api/chat/start",
            {"model": MODEL, "message": "hi", "cache": False},
            auth,
        ),
        "regenerate": ("POST", "/api/chat/regenerate", {"chatId": w.chat_id, "model": MODEL}, auth),
        "project": ("POST", "/api/projects", {"name": "Q"}, auth),
        "project-rename": ("PATCH", f"/api/projects/{w.project_id}", {"name": "Q"}, auth),
        "member-add": (
            "POST",
            f"/api/projects/{w.project_id}/members",
            {"email": w.bob["email"], "role": "editor"},
            auth,
        ),
        "member-role": (
            "PATCH",
            f"/api/projects/{w.project_id}/members/{w.bob['user']['id']}",
            {"role": "editor"},
            auth,
        ),
        "admin-user": (
            "PATCH",
            f"/api/admin/users/{w.alice['user']['id']}",
            {"plan": "pro", "role": "admin", "disabled": True},
            w.admin,
        ),
        "api-key": ("POST", "/api/keys", {"name": "k2", "expiresAt": "2027-06-01T00:00:00Z"}, auth),
        "preset": (
            "POST",
            "/api/presets",
            {"name": "p2", "model": MODEL, "systemPrompt": "s", "params": {"temperature": 1}},
            auth,
        ),
        "preset-edit": (
            "PATCH",
            f"/api/presets/{w.preset_id}",
            {"name": "p3", "model": MODEL, "systemPrompt": "s"},
            auth,
        ),
        "fork": (
            "POST",
            f"/api/chats/{w.chat_id}/fork",
            {"title": "f", "messageId": w.reply_id},
            auth,
        ),
        "feedback": (
            "PUT",
            f"/api/chats/{w.chat_id}/messages/{w.reply_id}/feedback",
            {"rating": "up", "comment": "c"},
            auth,
        ),
        "chat-edit": (
            "PATCH",
            f"/api/chats/{w.chat_id}",
            {"title": "t", "systemPrompt": "s", "pinned": True, "archived": True},
            auth,
        ),
        "import": (
            "POST",
            "/api/chats/import",
            {"format": "chatgpt", "conversations": conversations},
            auth,
        ),
        "share": (
            "POST",
            f"/api/chats/{w.chat_id}/shares",
            {"expiresAt": "2027-06-01T00:00:00Z"},
            auth,
        ),
        "v1": (
            "POST",
            "/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 1},
            w.v1,
        ),
    }


BODY_ROUTES = [
    "account", "login", "refresh", "logout", "password", "chat-start", "regenerate", "project",
    "project-rename", "member-add", "member-role", "admin-user", "api-key", "preset",
    "preset-edit", "fork", "feedback", "chat-edit", "import", "share", "v1",
]  # fmt: skip


@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_s21d_hostile_bodies_and_field_values_are_refused_and_write_nothing(
    chat: Chat, world: World, route: str
) -> None:
    method, url, valid, headers = body_routes(world)[route]
    v1 = url.startswith("/v1")
    before = await world.state()
    for label, body in hostile_bodies(valid, TAKEN.get(route, frozenset())):
        response = await send(chat, method, url, body, headers)
        assert_refused(response, f"{route} {label}", v1)
    assert await world.state() == before
    # the session and password still work: nothing was logged out or changed
    login = {"email": world.alice["email"], "password": PASSWORD}
    assert (await chat.client.post("/api/auth/login", json=login)).status_code == 200


async def test_s21d_a_refused_registration_leaves_the_email_free(chat: Chat) -> None:
    email = f"r{uuid.uuid4().hex[:8]}@example.com"
    valid = {"email": email, "password": PASSWORD, "name": "r"}
    for label, body in hostile_bodies(valid):
        assert_problem(await send(chat, "POST", "/api/auth/register", body, {}), label)
    again = await chat.client.post("/api/auth/register", json=valid)
    assert again.status_code == 201, again.text


MIXED_PATCHES: list[tuple[str, dict[str, Any]]] = [
    ("chat-edit", {"title": "NEW", "systemPrompt": "a\x00b"}),
    ("chat-edit", {"pinned": True, "title": ""}),
    ("chat-edit", {"archived": True, "systemPrompt": "x" * 2_000_000}),
    ("preset-edit", {"name": "NEW", "systemPrompt": "a\x00b"}),
    ("preset-edit", {"name": "NEW", "model": "nope/nope"}),
    ("preset-edit", {"name": "NEW", "params": {"temperature": 5}}),
    ("account", {"name": "NEW", "customInstructions": "a\x00b"}),
    ("account", {"customInstructions": "NEW", "name": "a\x07"}),
    ("project-rename", {"name": "a\x00"}),
    ("admin-user", {"plan": "pro", "role": "wizard"}),
]


async def test_s21d_a_patch_with_one_bad_field_changes_no_field(chat: Chat, world: World) -> None:
    before = await world.state()
    for route, body in MIXED_PATCHES:
        method, url, _, headers = body_routes(world)[route]
        response = await chat.client.request(method, url, json=body, headers=headers)
        assert_problem(response, f"{route} {list(body)}")
    assert await world.state() == before


async def test_s21d_a_bad_body_asking_for_a_stream_is_a_problem_not_an_event_stream(
    chat: Chat, world: World
) -> None:
    headers = {**world.auth, "Accept": "text/event-stream"}
    bodies = [
        '{"model":"x","message":5}',
        '{"model":"' + MODEL + '","message":"a\\u0000"}',
        '{"model":"nope/nope","message":"hi"}',
        '{"model":"' + MODEL + '","message":"hi","chatId":"' + str(uuid.uuid4()) + '"}',
        '{"model":"' + MODEL + '","message":"hi","params":{"temperature":9}}',
    ]
    before = await world.state()
    for body in bodies:
        assert_problem(await send(chat, "POST", "/api/chat/start", body, headers), body)
    assert await world.state() == before


# === random JSON in every field: never a server error ===========================================
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def examples(fields: list[str], count: int) -> list[dict[str, Any]]:
    """``count`` bodies of random JSON values in ``fields`` (the same ones on every run)."""
    drawn: list[dict[str, Any]] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.dictionaries(st.sampled_from(fields), JSON_VALUES, max_size=len(fields)))
    def draw(body: dict[str, Any]) -> None:
        drawn.append(body)

    draw()
    return drawn


async def test_s21d_random_json_in_every_field_is_answered_without_a_server_error(
    chat: Chat, world: World
) -> None:
    routes = body_routes(world)
    fields = {
        "chat-start": ["model", "message", "params", "attachmentIds", "cache", "systemPrompt",
                       "presetId", "projectId", "chatId"],
        "chat-edit": ["title", "systemPrompt", "pinned", "archived"],
        "preset": ["name", "model", "systemPrompt", "params"],
        "import": ["format", "conversations", "projectId"],
        "feedback": ["rating", "comment"],
        "project": ["name"],
        "account": ["name", "customInstructions"],
        "v1": ["model", "messages", "temperature", "tools", "tool_choice", "response_format",
               "stop", "stream", "max_tokens"],
    }  # fmt: skip
    for route, names in fields.items():
        method, url, _, headers = routes[route]
        for body in examples(names, 30):
            response = await chat.client.request(method, url, json=body, headers=headers)
            assert_answered(response, f"{route} {json.dumps(body)[:200]}", url.startswith("/v1"))


# === path parameters ============================================================================
BAD_IDS = [
    "not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "x" * 3000, "1", "-1",
    "%F0%9F%99%82", "%ff", "%ed%a0%80", "a%0Ab", "%20", "{id}", "0" * 32,
    "ffffffff-ffff-ffff-ffff-ffffffffffffff", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
]  # fmt: skip


def path_routes(w: World) -> list[tuple[str, str, list[str], dict[str, Any] | None]]:
    bob = w.bob["user"]["id"]
    return [
        ("GET", "/api/projects/{a}", [w.project_id], None),
        ("PATCH", "/api/projects/{a}", [w.project_id], {"name": "Q"}),
        ("GET", "/api/projects/{a}/members", [w.project_id], None),
        ("POST", "/api/projects/{a}/members", [w.project_id], {"email": "nobody@example.com"}),
        ("PATCH", "/api/projects/{a}/members/{b}", [w.project_id, bob], {"role": "editor"}),
        ("PATCH", "/api/admin/users/{a}", [bob], {"plan": "free"}),
        ("GET", "/api/admin/users/{a}/usage", [bob], None),
        ("PATCH", "/api/presets/{a}", [w.preset_id], {"name": "z"}),
        ("GET", "/v1/models/{a}", [MODEL], None),
        ("GET", "/api/chats/{a}/export", [w.chat_id], None),
        ("POST", "/api/chats/{a}/fork", [w.chat_id], {}),
        ("PUT", "/api/chats/{a}/messages/{b}/feedback", [w.chat_id, w.reply_id], {"rating": "up"}),
        ("GET", "/api/chats/{a}", [w.chat_id], None),
        ("PATCH", "/api/chats/{a}", [w.chat_id], {"pinned": True}),
        ("POST", "/api/chats/{a}/messages/{b}/restore", [w.chat_id, w.reply_id], None),
        ("GET", "/api/chats/{a}/messages/{b}/versions", [w.chat_id, w.reply_id], None),
        ("GET", "/api/chats/{a}/shares", [w.chat_id], None),
        ("POST", "/api/chats/{a}/shares", [w.chat_id], {}),
        ("GET", "/api/shared/{a}", [w.share["token"]], None),
        ("GET", "/api/files/{a}/content", [w.file_id], None),
        ("GET", "/api/files/{a}/events", [w.file_id], None),
        ("GET", "/api/files/{a}", [w.file_id], None),
        ("GET", "/api/auth/oauth/{a}/authorize", ["github"], None),
        ("GET", "/api/auth/oauth/{a}/callback", ["github"], None),
        ("POST", "/api/chat/sessions/{a}/stop", ["abc"], None),
        ("DELETE", "/api/chats/{a}/messages/{b}/feedback", [w.chat_id, w.reply_id], None),
        ("DELETE", "/api/chats/{a}/shares/{b}", [w.chat_id, w.share["id"]], None),
        ("DELETE", "/api/projects/{a}/members/{b}", [w.project_id, bob], None),
        ("DELETE", "/api/presets/{a}", [w.preset_id], None),
        ("DELETE", "/api/keys/{a}", [w.key["id"]], None),
        ("DELETE", "/api/files/{a}", [w.file_id], None),
        ("DELETE", "/api/projects/{a}", [w.project_id], None),
        ("DELETE", "/api/chats/{a}", [w.chat_id], None),
    ]


async def test_s21d_a_bad_id_in_any_path_parameter_is_a_problem_and_deletes_nothing(
    chat: Chat, world: World
) -> None:
    before = await world.state()
    for method, template, ids, body in path_routes(world):
        headers = world.admin if "/admin/" in template else world.auth
        v1 = template.startswith("/v1")
        for position in range(len(ids)):
            for bad in BAD_IDS:
                values = [bad if i == position else v for i, v in enumerate(ids)] + [""]
                url = template.replace("{a}", values[0]).replace("{b}", values[1])
                kwargs: dict[str, Any] = {} if body is None else {"json": body}
                response = await chat.client.request(method, url, headers=headers, **kwargs)
                label = f"{method} {template} [{position}]={bad[:20]}"
                assert response.status_code in (400, 404, 422), (label, response.text[:300])
                assert_refused(response, label, v1)
    assert await world.state() == before


# === query parameters ===========================================================================
BAD_QUERY_VALUES = [
    "abc", "-1", "0", "1000000000", "99999999999999999999", "9223372036854775808", "", "%00",
    "%ff", "%ed%a0%80", "1e309", "NaN", "1.5", "[]", "x" * 9000, "%20",
]  # fmt: skip


async def test_s21d_a_malformed_query_parameter_is_a_problem_or_ignored(
    chat: Chat, world: World
) -> None:
    bob = world.bob["user"]["id"]
    queries = [
        ("/api/chats", ["limit", "cursor", "archived", "pinned", "projectId"]),
        ("/api/chats/search?q=hello", ["q", "limit"]),
        ("/api/files", ["projectId", "limit", "cursor"]),
        ("/api/usage", ["from", "to"]),
        ("/api/admin/users", ["q", "limit", "offset"]),
        ("/api/admin/feedback", ["from", "to"]),
        (f"/api/admin/users/{bob}/usage", ["from", "to"]),
        (f"/api/chats/{world.chat_id}/export", ["format"]),
        (f"/api/files/{world.file_id}/content", ["redirect"]),
        ("/api/chat/stream", ["sessionId", "lastEventId"]),
        ("/api/auth/oauth/github/callback", ["code", "state", "error", "format"]),
    ]
    for url, params in queries:
        headers = world.admin if "/admin/" in url else world.auth
        joiner = "&" if "?" in url else "?"
        for param in params:
            for bad in BAD_QUERY_VALUES:
                response = await chat.client.get(f"{url}{joiner}{param}={bad}", headers=headers)
                assert_answered(response, f"{url} {param}={bad[:20]}")
            repeated = await chat.client.get(f"{url}{joiner}{param}=1&{param}=2", headers=headers)
            assert_answered(repeated, f"{url} {param} repeated")


async def test_s21d_a_well_formed_cursor_at_the_ends_of_time_pages_without_failing(
    chat: Chat, world: World
) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ends = [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    for at in ends:
        for chat_id in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(world.chat_id)):
            raw = struct.pack(">q16s", (at - epoch) // timedelta(microseconds=1), chat_id.bytes)
            cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            response = await chat.client.get(f"/api/chats?cursor={cursor}", headers=world.auth)
            assert_answered(response, f"{at} {chat_id}")
            if response.status_code == 200:
                ids = [c["id"] for c in response.json()["items"]]
                assert ids in ([], [world.chat_id]), ids


BAD_RANGES = [
    ("from=0001-01-01&to=9999-12-31", "from"),
    ("from=2026-01-02&to=2026-01-01", "from"),
    ("from=2026-02-30", "from"),
    ("to=2026-1-1", "to"),
]


async def test_s21d_a_bad_usage_range_is_a_problem_naming_it(chat: Chat, world: World) -> None:
    for query, field in BAD_RANGES:
        for url in ("/api/usage", "/api/admin/feedback"):
            headers = world.admin if "admin" in url else world.auth
            response = await chat.client.get(f"{url}?{query}", headers=headers)
            body = assert_problem(response, f"{url}?{query}")
            keys = [body.get("field")] + [e.get("key") for e in body.get("errors", [])]
            assert field in keys, body


async def test_s21d_an_admin_search_takes_like_wildcards_literally(
    chat: Chat, world: World
) -> None:
    for q in ("%25", "_", "%25%25%25"):
        response = await chat.client.get(f"/api/admin/users?q={q}", headers=world.admin)
        assert response.status_code == 200, response.text
        assert all("%" in u["email"] + u["name"] or "_" in u["email"] + u["name"]
                   for u in response.json()["items"]), (q, response.text[:300])  # fmt: skip


# === expiry times ===============================================================================
ODD_EXPIRIES = [
    "2099-01-01T00:00:00", "2020-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+14:00", "2099-01-01", "2099-01-01T00:00:00+24:00",
    "2099-13-01T00:00:00Z", "now", "+12099-01-01T00:00:00Z", "2099-01-01T24:00:00Z",
]  # fmt: skip


async def test_s21d_an_odd_expiry_is_a_problem_and_makes_no_share_or_key(
    chat: Chat, world: World
) -> None:
    before = await world.state()
    for expires in ODD_EXPIRIES:
        body = {"expiresAt": expires}
        share = await chat.client.post(
            f"/api/chats/{world.chat_id}/shares", json=body, headers=world.auth
        )
        key = await chat.client.post("/api/keys", json={"name": "k", **body}, headers=world.auth)
        for response in (share, key):
            assert_problem(response, expires)
    assert await world.state() == before


# === uploads ====================================================================================
def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "BOUND") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\n{disposition}\r\n".encode()
        out += (b"Content-Type: text/plain\r\n" if filename is not None else b"") + b"\r\n"
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


FILE = ("file", "a.txt", b"hello")
REFUSED_UPLOADS: dict[str, bytes] = {
    "long filename": multipart([("file", "a" * 5000 + ".txt", b"hi")]),
    "filename not utf-8": b'--BOUND\r\nContent-Disposition: form-data; name="file"; '
    b'filename="\xff.txt"\r\n\r\nhi\r\n--BOUND--\r\n',
    "empty file": multipart([("file", "a.txt", b"")]),
    "binary text": multipart([("file", "a.txt", b"hello\x00world")]),
    "projectId nul": multipart([("projectId", None, b"\x00"), FILE]),
    "projectId bad": multipart([("projectId", None, b"nope"), FILE]),
    "projectId unknown": multipart([("projectId", None, str(uuid.uuid4()).encode()), FILE]),
    "projectId not utf-8": multipart([("projectId", None, b"\xff"), FILE]),
    "projectId long": multipart([("projectId", None, b"x" * 5000), FILE]),
    "no file": multipart([("projectId", None, b"x")]),
    "two files": multipart([FILE, FILE]),
    "truncated": b'--BOUND\r\nContent-Disposition: form-data; name="file"; '
    b'filename="a.txt"\r\n\r\nhi',
    "garbage": b"garbage",
    "empty": b"",
}


async def test_s21d_a_hostile_upload_is_a_problem_and_stores_nothing(
    chat: Chat, world: World
) -> None:
    files = "/api/files"
    before = (await chat.client.get(files, headers=world.auth)).json()
    multipart_type = {"Content-Type": "multipart/form-data; boundary=BOUND"}
    for label, body in REFUSED_UPLOADS.items():
        response = await chat.client.post(
            "/api/files/upload", content=body, headers={**world.auth, **multipart_type}
        )
        assert_problem(response, label)
    body = multipart([FILE])
    for label, content_type in [
        ("no type", None), ("json", "application/json"), ("no boundary", "multipart/form-data"),
        ("long boundary", "multipart/form-data; boundary=" + "a" * 200),
    ]:  # fmt: skip
        headers = dict(world.auth) | ({"Content-Type": content_type} if content_type else {})
        response = await chat.client.post("/api/files/upload", content=body, headers=headers)
        assert_problem(response, label)
    for project in ("nope", "%00", str(uuid.uuid4()), "x" * 3000):
        response = await chat.client.post(
            f"/api/files/upload?projectId={project}", content=body,
            headers={**world.auth, **multipart_type},
        )  # fmt: skip
        assert_problem(response, project[:20])
    assert (await chat.client.get(files, headers=world.auth)).json() == before


async def test_s21d_a_hostile_filename_is_kept_sanitized(chat: Chat, world: World) -> None:
    multipart_type = {"Content-Type": "multipart/form-data; boundary=BOUND"}
    for filename in ("a\x00b.txt", "a\x07\x1b[31m.txt", "../../etc/passwd", ""):
        response = await chat.client.post(
            "/api/files/upload", content=multipart([("file", filename, b"hi")]),
            headers={**world.auth, **multipart_type},
        )  # fmt: skip
        assert response.status_code == 201, (filename, response.text)
        kept = response.json()["filename"]
        assert kept, kept
        assert "/" not in kept, kept
        assert not any(ord(ch) < 32 for ch in kept), repr(kept)


# === /v1 nested fields: OpenAI errors ===========================================================
def _v1(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


def _part(part: dict[str, Any]) -> dict[str, Any]:
    return _v1(messages=[{"role": "user", "content": [part]}])


V1_REFUSED: dict[str, dict[str, Any]] = {
    "message not an object": _v1(messages=["hi"]),
    "no messages": _v1(messages=[]),
    "unknown role": _v1(messages=[{"role": "wizard", "content": "hi"}]),
    "content a number": _v1(messages=[{"role": "user", "content": 5}]),
    "content an object": _v1(messages=[{"role": "user", "content": {}}]),
    "unknown part": _part({"type": "wizard"}),
    "image url a number": _part({"type": "image_url", "image_url": {"url": 5}}),
    "image url not base64": _part(
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}
    ),
    "image url a file": _part({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}),
    "image detail an object": _part(
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": {}}}
    ),
    "n too big": _v1(n=2**64),
    "max_tokens too big": _v1(max_tokens=2**70),
    "seed too big": _v1(seed=2**70),
    "temperature too big": _v1(temperature=1e300),
    "stop too many": _v1(stop=["a"] * 100),
    "stop a number": _v1(stop=5),
    "stream a string": _v1(stream="yes"),
    "tool without function": _v1(tools=[{"type": "function"}]),
    "tool name with NUL": _v1(tools=[{"type": "function", "function": {"name": "a\x00b"}}]),
    "too many tools": _v1(
        tools=[{"type": "function", "function": {"name": f"f{i}"}} for i in range(500)]
    ),
    "unknown tool_choice": _v1(tool_choice="wizard"),
    "unknown response_format": _v1(response_format={"type": "wizard"}),
    "schema not an object": _v1(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": 5}}
    ),
    "unknown reasoning_effort": _v1(reasoning_effort="wizard"),
    "model with NUL": _v1(model="\x00"),
    "model 100k long": _v1(model="x" * 100_000),
}


async def test_s21d_v1_refuses_hostile_nested_fields_in_openai_shape(
    chat: Chat, world: World
) -> None:
    for label, body in V1_REFUSED.items():
        response = await chat.client.post("/v1/chat/completions", json=body, headers=world.v1)
        assert_openai_error(response, label)


# === routes, methods and credentials ============================================================
async def test_s21d_unknown_routes_and_methods_answer_in_the_routes_error_shape(
    chat: Chat, world: World
) -> None:
    for method, url in [("GET", "/api/nope"), ("GET", "/nope"), ("PUT", "/api/chats"),
                        ("DELETE", "/api/auth/me"), ("TRACE", "/api/chats"),
                        ("PATCH", "/api/projects")]:  # fmt: skip
        assert_problem(await chat.client.request(method, url, headers=world.auth), url)
    for method, url in [("GET", "/v1/embeddings"), ("GET", "/v1/chat/completions"),
                        ("PUT", "/v1/models"), ("GET", "/v1/nope")]:  # fmt: skip
        assert_openai_error(await chat.client.request(method, url, headers=world.v1), url)


async def test_s21d_missing_or_broken_credentials_are_401s_on_every_route(
    chat: Chat, world: World
) -> None:
    spec = json.loads((await chat.client.get("/api/docs/openapi.json")).text)
    public = {
        "/api/health",
        "/api/health/ready",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/register",
        "/api/shared/{token}",
        "/api/auth/oauth/{provider}/authorize",
        "/api/auth/oauth/{provider}/callback",
        "/api/auth/logout",
        "/api/auth/password/forgot",
        "/api/auth/password/reset",
        "/api/chat/stream",
    }  # fmt: skip  (a stream is read by its session id alone)
    bad_credentials: list[dict[str, str]] = [
        {}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"},
        {"Authorization": "Bearer " + "x" * 20_000},
        {"Authorization": "Bearer " + world.key["secret"][:-1]},
    ]  # fmt: skip
    for path, operations in spec["paths"].items():
        if path in public:
            continue
        url = path.replace("{model_id}", MODEL)
        url = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), url)  # every other id: unknown
        for method in operations:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for headers in bad_credentials:
                response = await chat.client.request(method.upper(), url, headers=headers)
                label = f"{method} {path} {str(headers)[:40]}"
                assert response.status_code == 401, (label, response.text[:200])
                assert_refused(response, label, path.startswith("/v1"))
    assert await world.state()  # the real credentials still work


# === defects ====================================================================================
async def test_s21d_a_missing_body_is_named_as_such_not_as_a_python_parameter(
    chat: Chat, world: World
) -> None:
    for url, body in [(u, b) for u in ("/api/chat/start", "/api/projects", "/api/auth/login",
                                       "/api/keys") for b in (None, b"")]:  # fmt: skip
        answer = assert_problem(await send(chat, "POST", url, body, world.auth), url)
        assert "data" not in [e.get("key") for e in answer.get("errors", [])], answer
        assert "'data'" not in json.dumps(answer), answer
        assert "body" in answer["detail"].lower(), answer


async def test_s21d_v1_a_missing_body_is_named_as_such_not_as_a_python_parameter(
    chat: Chat, world: World
) -> None:
    for body in (None, b""):
        error = assert_openai_error(
            await send(chat, "POST", "/v1/chat/completions", body, world.v1), "v1"
        )
        assert error["param"] != "data", error
        assert "'data'" not in error["message"], error


async def test_s21d_an_unknown_docs_path_is_a_problem_not_an_html_page(chat: Chat) -> None:
    for path in ("nope", "swagger", "redoc", "openapi.jsonx"):
        response = await chat.client.get(f"/api/docs/{path}")
        assert response.status_code == 404, response.text[:200]
        assert_problem(response, path)


async def test_s21d_v1_a_text_part_without_text_says_the_text_is_missing(
    chat: Chat, world: World
) -> None:
    for part in ({"type": "text", "text": None}, {"type": "text"}):
        body = _part(part)
        response = await chat.client.post("/v1/chat/completions", json=body, headers=world.v1)
        error = assert_openai_error(response, str(part))
        assert "not supported" not in error["message"], error
        assert error["param"] == "messages[0].content[0].text", error


async def test_s21d_an_upload_header_not_utf8_is_refused_without_python_internals(
    chat: Chat, world: World
) -> None:
    response = await chat.client.post(
        "/api/files/upload", content=REFUSED_UPLOADS["filename not utf-8"],
        headers={**world.auth, "Content-Type": "multipart/form-data; boundary=BOUND"},
    )  # fmt: skip
    detail = assert_problem(response, "upload")["detail"]
    assert "UnicodeDecodeError" not in detail, detail
    assert "b'" not in detail, detail


async def test_s21d_v1_a_tool_message_without_its_call_id_says_so_in_json_terms(
    chat: Chat, world: World
) -> None:
    body = _v1(messages=[{"role": "tool", "content": "x"}])
    response = await chat.client.post("/v1/chat/completions", json=body, headers=world.v1)
    error = assert_openai_error(response, "tool")
    assert "None" not in error["message"], error
