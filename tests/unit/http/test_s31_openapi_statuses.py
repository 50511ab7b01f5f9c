"""Every status an operation answers is one the OpenAPI document lists for it (s31).

The error statuses are derived (``openapi_errors.py``) from the handlers' shapes and a few hand-kept
tables; this walks every operation of the served document and provokes the error kinds a client
meets: no credential, a bogus one, an API key where a session is required, a stranger, a viewer, an
editor, an admin and the owner naming a resource (in the path or in the body), ids that name nothing
or are not ids, a conflicting state (the same request twice: a duplicate registration, member, ...;
the last owner, the last admin, a reply still being written), and bodies and queries that cannot be
read; and on a server without email, searches or transcription. Each operation gets a fresh app
and world, so that one's deletions do not hide another's statuses. A route added without a body
entry below is still walked, with an empty body.

What the fake container cannot run goes unprovoked here: POST /api/chat/start and /regenerate
need the real app's admission gate and generation (they answer the fake's 500 past their input),
and the quotas (100 presets, 20 active searches) are not filled. The second test reads the
``raise`` statements of each route's use cases instead, which reaches those rules too, for every
route given its use case as a dependency (not the chat routes, which ask the container).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import typing
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from tests.support.fake_transcription import tiny_wav
from tests.unit.http.accounts import PASSWORD, seed_api_key
from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.config import Settings
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import Chat, Message, MessageStatus, TokenUsage
from whalli.domain.model.errors import WhalliError
from whalli.domain.model.notifications import Notification
from whalli.domain.model.replies import DoneEvent
from whalli.domain.model.users import Role
from whalli.entrypoints.http.app import create_app
from whalli.entrypoints.http.openai_errors import openai_status
from whalli.entrypoints.http.problems import STATUS_BY_ERROR

METHODS = ("get", "post", "put", "patch", "delete")
MULTIPART = "multipart"
# A good request's body per operation ("{name}" is one of the world's values); others get {}.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/auth/password"): {
        "currentPassword": PASSWORD,
        "newPassword": "N3w pass phrase!",
    },
    ("DELETE", "/api/auth/me"): {"password": PASSWORD},
    ("PATCH", "/api/auth/me"): {"name": "Ada L."},
    ("POST", "/api/auth/login"): {"email": "{ada_email}", "password": PASSWORD},
    ("POST", "/api/auth/logout"): {"refreshToken": "{refresh}"},
    ("POST", "/api/auth/refresh"): {"refreshToken": "{refresh}"},
    ("POST", "/api/auth/register"): {"email": "new@example.com", "password": "N3w pass phrase!"},
    ("POST", "/api/auth/email/confirm"): {"token": "not-a-token"},
    ("POST", "/api/auth/password/forgot"): {"email": "{ada_email}"},
    ("POST", "/api/auth/password/reset"): {"token": "not-a-token", "newPassword": "N3w phrase!!"},
    ("POST", "/api/chat/regenerate"): {"chatId": "{chat_id}"},
    ("POST", "/api/chat/start"): {"message": "Hi", "model": "dev/echo", "chatId": "{chat_id}"},
    ("POST", "/api/projects"): {"name": "Another"},
    ("PATCH", "/api/projects/{project_id}"): {"name": "Renamed"},
    ("POST", "/api/projects/{project_id}/members"): {"email": "{sam_email}", "role": "viewer"},
    ("PATCH", "/api/projects/{project_id}/members/{member_id}"): {"role": "editor"},
    ("PATCH", "/api/admin/users/{user_id}"): {"role": "user"},
    ("POST", "/api/keys"): {"name": "Laptop"},
    ("POST", "/api/presets"): {"name": "Terse", "model": "dev/echo"},
    ("PATCH", "/api/presets/{preset_id}"): {"name": "Terser"},
    ("POST", "/v1/chat/completions"): {
        "model": "dev/echo",
        "messages": [{"role": "user", "content": "Hi"}],
    },
    ("POST", "/v1/audio/transcriptions"): (MULTIPART, {"model": "whisper-1"}),
    ("POST", "/api/chats/{chat_id}/fork"): {"projectId": "{project_id}"},
    ("PUT", "/api/chats/{chat_id}/messages/{message_id}/feedback"): {"rating": "up"},
    ("PATCH", "/api/chats/{chat_id}"): {"title": "Renamed", "pinned": True},
    ("POST", "/api/chats/import"): {
        "format": "chatgpt",
        "conversations": [],
        "projectId": "{project_id}",
    },
    ("POST", "/api/chats/{chat_id}/shares"): {},
    ("POST", "/api/files/upload"): (MULTIPART, {}),
    ("POST", "/api/searches"): {"query": "pg", "intervalMinutes": 60, "projectId": "{project_id}"},
    ("PATCH", "/api/searches/{search_id}"): {"active": True, "query": "postgres"},
}
# A good request's query per path (its other query parameters are optional).
QUERIES: dict[str, str] = {
    "/api/chats": "projectId={project_id}",
    "/api/files": "projectId={project_id}",
    "/api/searches": "projectId={project_id}",
    "/api/files/upload": "projectId={project_id}",
    "/api/chat/stream": "sessionId={session_id}",
    "/api/auth/oauth/{provider}/callback": "code=c0de&state=st4te",
}
# Bodies no route can read, and a query value no parameter takes.
UNREADABLE: list[tuple[bytes, str]] = [
    (b'{"name": ', "application/json"),
    (b'{"noSuchField": 1}', "application/json"),
    (b"[1, 2]", "application/json"),
    (b"name=x", "text/plain"),
]
BAD_QUERY_VALUE = "%00not-a-value"


@dataclasses.dataclass
class World:
    """Ada's project (Eve edits, Vic views, Zed views), a chat with a finished reply, a chat whose
    reply is still being written, a file, a search, a share, a preset, a notification; Sam a
    stranger with a project, a key and a preset of his own; Root the only admin. ``values`` fill
    the paths and bodies ("good"); ``other`` is a second fill of the path's ids (the last owner,
    the last admin, the busy chat, Sam's things)."""

    container: FakeContainer
    headers: dict[str, dict[str, str]]
    values: dict[str, str]
    other: dict[str, str]


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], m[0]), template)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


async def _seed_chat(
    container: FakeContainer, project_id: str, user: UUID, done: bool
) -> tuple[Chat, UUID]:
    now = container.clock.advance(timedelta(seconds=1))
    chat = Chat(
        id=container.ids.new_id(), project_id=UUID(project_id), user_id=user, title="A chat",
        created_at=now, updated_at=now,
    )  # fmt: skip
    question = Message.from_user(id=container.ids.new_id(), chat_id=chat.id, content="Hi", now=now)
    reply = Message.pending_reply(
        id=container.ids.new_id(), chat_id=chat.id, model="dev/echo", provider="dev", now=now
    )
    if done:
        reply.finish(status=MessageStatus.COMPLETE, content="Hello", now=now, usage=TokenUsage())
    async with container.uow() as uow:
        await uow.chats.add(chat)
        await uow.chats.add_message(question)
        await uow.chats.add_message(reply)
        await uow.commit()
    return chat, reply.id


async def _build_world(client: AsyncTestClient[Any], container: FakeContainer) -> World:
    users = {}
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for name in ("ada", "eve", "vic", "zed", "sam", "root"):
        role = Role.ADMIN if name == "root" else Role.USER
        users[name], secret = await seed_api_key(container, name, role=role)
        headers[f"{name} key"] = {"X-API-Key": secret}
    headers["bogus key"] = {"X-API-Key": "wk_" + "0" * 43}
    headers["bogus bearer"] = {"Authorization": "Bearer not.a.jwt"}
    headers["basic scheme"] = {"Authorization": "Basic YWRhOnNlY3JldA=="}
    headers["two credentials"] = {**headers["ada key"], "Authorization": "Bearer not.a.jwt"}
    async with container.uow() as uow:  # an address already verified: Root's
        await uow.users.update(msgspec.structs.replace(users["root"], email_verified=True))
        await uow.commit()
    assert container.transcriber is not None
    container.transcriber.by_content[tiny_wav()] = "Hello."
    values = {f"{name}_email": user.email for name, user in users.items()}
    for name in ("ada", "vic", "root"):
        login = {"email": users[name].email, "password": PASSWORD}
        signed_in = (await client.post("/api/auth/login", json=login)).json()
        headers[f"{name} session"] = {"Authorization": f"Bearer {signed_in['accessToken']}"}
        values.setdefault("refresh", signed_in["refreshToken"])

    async def call(who: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        answer = await client.request(method, path, json=body, headers=headers[who], **kw)
        assert answer.status_code < 300, (method, path, answer.text)
        return answer.json()

    project = (await call("ada key", "POST", "/api/projects", {"name": "Zephyr"}))["id"]
    for name, role in (("eve", "editor"), ("vic", "viewer"), ("zed", "viewer")):
        member = {"email": users[name].email, "role": role}
        await call("ada key", "POST", f"/api/projects/{project}/members", member)
    sams = (await call("sam key", "POST", "/api/projects", {"name": "Sam's"}))["id"]
    chat, reply = await _seed_chat(container, project, users["ada"].id, done=True)
    busy, busy_reply = await _seed_chat(container, project, users["ada"].id, done=False)
    replies = {chat.id: reply, busy.id: busy_reply}
    session = ChatSession.open(
        id="S" * 43, user_id=users["ada"].id, chat_id=chat.id, project_id=UUID(project),
        user_message_id=replies[chat.id], reply_message_id=replies[chat.id], model="dev/echo",
        now=container.clock.now(),
    )  # fmt: skip
    await container.chat_sessions.save(session, container.clock.now())
    done = DoneEvent(
        message_id=replies[chat.id], cached=False, prompt_tokens=1, completion_tokens=1,
        finish_reason="stop", cost_usd=0.0, status="complete",
    )  # fmt: skip
    await container.reply_stream.publish(session.id, done, 600)
    files = {}
    for who, into in (("ada key", project), ("sam key", sams)):
        upload = {"file": ("notes.txt", b"Some notes.", "text/plain")}
        files[who] = await call(who, "POST", f"/api/files/upload?projectId={into}", files=upload)
    search = {"query": "pg", "intervalMinutes": 60, "projectId": project}
    search_id = (await call("ada key", "POST", "/api/searches", search))["id"]
    share = await call("ada key", "POST", f"/api/chats/{chat.id}/shares", {})
    presets = {}
    for who in ("ada key", "sam key"):
        preset = {"name": "Terse", "model": "dev/echo"}
        presets[who] = (await call(who, "POST", "/api/presets", preset))["id"]
    keys = {w: (await call(w, "GET", "/api/keys"))[0]["id"] for w in ("ada key", "sam key")}
    notes = {}
    async with container.uow() as uow:
        for name in ("ada", "sam"):
            notes[name] = note = Notification(
                id=uuid4(), user_id=users[name].id, kind="search_results", title="New results",
                link=f"/api/searches/{search_id}/results", created_at=container.clock.now(),
            )  # fmt: skip
            await uow.notifications.add(note)
        await uow.commit()
    values |= {
        "project_id": project, "chat_id": str(chat.id), "message_id": str(replies[chat.id]),
        "member_id": str(users["zed"].id), "user_id": str(users["vic"].id),
        "file_id": files["ada key"]["id"], "search_id": search_id, "share_id": share["id"],
        "token": share["token"], "preset_id": presets["ada key"], "key_id": keys["ada key"],
        "notification_id": str(notes["ada"].id), "session_id": session.id,
        "provider": "github", "model_id": "dev/echo",
    }  # fmt: skip
    other = values | {
        "project_id": sams, "chat_id": str(busy.id), "message_id": str(replies[busy.id]),
        "member_id": str(users["ada"].id), "user_id": str(users["root"].id),
        "file_id": files["sam key"]["id"], "preset_id": presets["sam key"],
        "key_id": keys["sam key"], "notification_id": str(notes["sam"].id),
        "provider": "no-such-provider", "model_id": "openai/gpt-4o",
    }  # fmt: skip
    return World(container, headers, values, other)


@dataclasses.dataclass
class Provocation:
    what: str
    who: str
    ids: str = "good"  # "good", "other", "missing" or "malformed"
    body: tuple[bytes, str] | None = None  # None: the operation's good body
    bad_query: bool = False
    unconfigured: bool = False  # a server sending no email, running no searches nor transcription


def _provocations(world: World) -> Iterator[Provocation]:
    # the least privileged first: an owner's success may delete what the others would name
    credentials = ("anonymous", "bogus key", "bogus bearer", "basic scheme", "two credentials")
    for who in (*credentials, "sam key", "vic key", "vic session", "eve key"):
        yield Provocation(f"as {who}", who)
    for body in UNREADABLE:
        yield Provocation(f"unreadable body {body[0]!r}", "ada session", body=body)
    yield Provocation("unreadable query values", "ada session", bad_query=True)
    for who in ("ada session", "root session"):
        yield Provocation(f"ids naming nothing, as {who}", who, ids="missing")
        yield Provocation(f"strings that are no ids, as {who}", who, ids="malformed")
    yield Provocation("as root (admin, address verified)", "root session")
    yield Provocation("as ada with an API key", "ada key")
    yield Provocation("as ada signed in", "ada session")
    yield Provocation("as ada, again (a conflict)", "ada session")
    for who in ("ada session", "root session"):
        yield Provocation(f"on the other ids, as {who}", who, ids="other")
    # (Vic: Ada may have used up her budget of verification emails by now)
    yield Provocation("on a server without those features", "vic session", unconfigured=True)


def _values(world: World, ids: str) -> dict[str, str]:
    """What fills the path, query and body: ``ids`` says which ids."""
    if ids == "good":
        return world.values
    if ids == "other":
        return world.other
    named = [name for name in world.values if name.endswith("_id") or name == "token"]
    if ids == "missing":
        return world.values | {n: str(uuid4()) if n.endswith("_id") else "nope" for n in named}
    return world.values | dict.fromkeys(named, "not-an-id")


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "s31-boundary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    body = (part + "Content-Type: audio/wav\r\n\r\n").encode() + tiny_wav() + b"\r\n"
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += value.encode() + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def _provoke(
    client: AsyncTestClient[Any], world: World, method: str, path: str, operation: dict[str, Any],
    provocation: Provocation,
) -> int:  # fmt: skip
    values = _values(world, provocation.ids)
    url, query = _fill(path, values), _fill(QUERIES.get(path, ""), values)
    if provocation.bad_query:
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        query = "&".join(f"{name}={BAD_QUERY_VALUE}" for name in names)
    headers = dict(world.headers[provocation.who])
    if provocation.unconfigured:
        world.container.email, world.container.transcriber = None, None
        world.container.searches_enabled = False
    content = None
    if provocation.body is not None:
        content, headers["Content-Type"] = provocation.body
    elif "requestBody" in operation:
        body = _fill(BODIES.get((method.upper(), path), {}), values)
        if isinstance(body, tuple):
            content, headers["Content-Type"] = _multipart(body[1])
        else:
            content, headers["Content-Type"] = msgspec.json.encode(body), "application/json"
    answer = await client.request(
        method, f"{url}?{query}" if query else url, content=content, headers=headers,
        follow_redirects=False,
    )  # fmt: skip
    return answer.status_code


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _settings() -> Settings:
    # budgets no walk reaches (the clock does not move), and event streams that end at once
    return Settings(
        env="test", rate_limit_user_per_min=100_000, rate_limit_ip_per_min=100_000,
        rate_limit_login_per_account_ip="100000/60", rate_limit_login_per_ip="100000/60",
        file_events_poll_s=0.01, file_events_max_lifetime_s=0.05,
    )  # fmt: skip


async def _walk() -> tuple[int, list[str]]:
    """How many operations were walked, and every (operation, provocation, status) whose status
    the document does not list for that operation."""
    probes = [FakeProbe("postgres"), FakeProbe("redis"), FakeProbe("s3")]
    async with AsyncTestClient(app=create_app(FakeContainer(_settings(), probes))) as client:
        document = (await client.get("/api/docs/openapi.json")).json()
    undocumented: list[str] = []
    operations = 0
    for method, path, operation in _operations(document):
        operations += 1
        container = FakeContainer(_settings(), [FakeProbe(n) for n in ("postgres", "redis", "s3")])
        async with AsyncTestClient(
            app=create_app(container), raise_server_exceptions=False
        ) as client:
            world = await _build_world(client, container)
            for provocation in _provocations(world):
                status = await _provoke(client, world, method, path, operation, provocation)
                if str(status) not in operation["responses"]:
                    undocumented.append(f"{method.upper()} {path} {provocation.what}: {status}")
    return operations, undocumented


async def test_every_status_an_operation_answers_is_documented_for_it() -> None:
    operations, undocumented = await _walk()

    assert not undocumented, "\n".join(["statuses the document does not list:", *undocumented])
    assert operations >= 80


# --- what each use case raises ------------------------------------------------------------------
# A use case class serving several routes raises, for one route, what only another reaches.
ANOTHER_ROUTES: dict[tuple[str, str], set[int]] = {
    # StartOAuth refuses an API key asking to link (``link_to``): POST .../link, not this
    ("GET", "/api/auth/oauth/{provider}/authorize"): {403},
    # OAuthLinks also links (403 for an API key) and unlinks (404, 409)
    ("GET", "/api/auth/oauth/links"): {403, 404, 409},
    # RateReplyHandler also rates (PUT), which waits for the reply to finish; a removal does not
    ("DELETE", "/api/chats/{chat_id}/messages/{message_id}/feedback"): {409},
}


def _status(error: type[WhalliError]) -> int:
    return next((STATUS_BY_ERROR[c] for c in error.__mro__ if c in STATUS_BY_ERROR), 500)


def _raised(use_case: type) -> set[type[WhalliError]]:
    """The domain errors a ``raise`` names in the use case's class or in its module's functions
    (its own rules; not its module's other classes, which other routes call)."""
    module = importlib.import_module(use_case.__module__)
    found: set[type[WhalliError]] = set()
    tree = ast.parse(inspect.getsource(module))
    scopes = [
        s for s in tree.body
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)
        or (isinstance(s, ast.ClassDef) and s.name == use_case.__name__)
    ]  # fmt: skip
    for node in (n for scope in scopes for n in ast.walk(scope)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            error = getattr(module, getattr(raised, "id", None) or getattr(raised, "attr", ""), 0)
            if inspect.isclass(error) and issubclass(error, WhalliError):
                found.add(error)
    return found


def _use_cases(app: Litestar) -> Iterator[tuple[str, str, set[type]]]:
    """(method, path, the use cases its handler is given) of every operation."""
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                use_cases = {
                    kind
                    for parameter in handler.parsed_fn_signature.parameters.values()
                    for kind in (parameter.annotation, *typing.get_args(parameter.annotation))
                    if inspect.isclass(kind)
                    and kind.__module__.startswith("whalli.domain.services")
                }
                for method in handler.http_methods:
                    yield method, route.path_format or "/", use_cases


async def test_every_status_a_routes_use_case_raises_is_documented_for_it(
    app: Litestar, client: AsyncTestClient[Litestar]
) -> None:
    paths = (await client.get("/api/docs/openapi.json")).json()["paths"]
    undocumented, checked, excused = [], 0, set()
    for method, path, use_cases in _use_cases(app):
        operation = paths.get(path, {}).get(method.lower())
        if operation is None:  # not in the document
            continue
        for error in set().union(*map(_raised, use_cases)):
            status = _status(error)
            status = openai_status(status) if path.startswith("/v1/") else status
            checked += 1
            if str(status) in operation["responses"]:
                continue
            if status in ANOTHER_ROUTES.get((method, path), set()):
                excused.add((method, path, status))
            else:
                undocumented.append(f"{method} {path}: {status} ({error.__name__})")

    assert not undocumented, "\n".join(["statuses the document does not list:", *undocumented])
    assert checked >= 60
    # (an excuse no longer needed goes: it would hide the status once its route does answer it)
    assert excused == {(m, p, s) for (m, p), statuses in ANOTHER_ROUTES.items() for s in statuses}
