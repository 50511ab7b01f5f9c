"""Hunt S23 of the request Whalli sends upstream for a conversation: what the providers on
loopback (OpenAI, Anthropic, xAI and a generic OpenAI-compatible server, each a
``FakeProviderServer`` recording the requests it gets) actually receive for a chat, checked
against OpenAI's Chat Completions and Anthropic's Messages API rules: history trimmed to the
window of the model that answers (a fallback's too), turns that alternate for Anthropic,
parameters mapped per provider, a reply's room kept. Through the real app on the shared
Postgres, Redis and S3. Defects are ``xfail(strict=True)``, asserting the correct behaviour."""

from __future__ import annotations

import asyncio
import itertools
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_files import PNG
from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.integration.http.test_reasoning_files_hunt import image_parts, upload_png
from tests.integration.http.test_s21_hunt_chats import _talk
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    anthropic_default,
    anthropic_error,
    anthropic_stream,
    openai_default,
    openai_error,
)
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.container import build_container
from whalli.domain.services.chat.context import estimate_tokens
from whalli.entrypoints.http.asgi import build_app

PROBLEM = "application/problem+json"
SHIPPED = Path(__file__).parents[3] / "catalog" / "models.toml"
OVERHEAD = 4  # MESSAGE_OVERHEAD_TOKENS
BIG, SMALL = 8000, 2000  # context windows of the test models


def _model(id_: str, provider: str, upstream: str, window: int, **extra: str | int | bool) -> str:
    lines = [
        "[[model]]",
        f'id = "{id_}"',
        f'provider = "{provider}"',
        f'upstream = "{upstream}"',
        'min_plan = "free"',
        "input_usd_per_mtok = 1.0",
        "output_usd_per_mtok = 2.0",
        f"context_window = {window}",
    ]
    for key, value in extra.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


@dataclass
class Providers:
    chat: Chat
    openai: FakeProviderServer
    anthropic: FakeProviderServer
    xai: FakeProviderServer
    compatible: FakeProviderServer
    ids: dict[str, str]

    @property
    def client(self) -> Any:
        return self.chat.client

    def all_requests(self) -> int:
        servers = (self.openai, self.anthropic, self.xai, self.compatible)
        return sum(len(s.requests) for s in servers)


def _failing(upstreams: set[str]) -> Callable[[RecordedRequest], Reply]:
    """OpenAI's well-behaved default, but a 500 for the models named in ``upstreams``."""
    default = openai_default()

    def reply(request: RecordedRequest) -> Reply:
        if request.body.get("model") in upstreams:
            return Reply(status=500, body=openai_error("The server had an error.", "server_error"))
        return default(request)

    return reply


@asynccontextmanager
async def _providers(
    stack_urls: StackUrls,
    unique: str,
    tmp_path: Path,
    failing: frozenset[str] = frozenset(),
) -> AsyncIterator[Providers]:
    tag = f"s23-{unique}"
    ids = {
        "big": f"openai/{tag}-big",
        "small": f"openai/{tag}-small",
        "claude": f"anthropic/{tag}-claude",
        "grok": f"xai/{tag}-grok",
        "grok_vision": f"xai/{tag}-grok-vision",
        "local": f"openai-compatible/{tag}-local",
    }
    extra = "\n".join(
        [
            _model(ids["big"], "openai", "s23-big", BIG, fallback=ids["small"]),
            _model(ids["small"], "openai", "s23-small", SMALL),
            _model(
                ids["claude"], "anthropic", "s23-claude", BIG, fallback=ids["small"], vision=True
            ),
            _model(ids["grok"], "xai", "s23-grok", BIG),
            _model(ids["grok_vision"], "xai", "s23-grok-vision", BIG, vision=True),
            _model(ids["local"], "openai-compatible", "s23-local", BIG),
        ]
    )
    path = tmp_path / "models.toml"
    path.write_text(SHIPPED.read_text() + "\n" + extra)
    async with (
        FakeProviderServer(_failing(set(failing))) as openai,
        FakeProviderServer(anthropic_default()) as anthropic,
        FakeProviderServer(openai_default()) as xai,
        FakeProviderServer(openai_default()) as compatible,
    ):
        settings = _settings(
            stack_urls, unique,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=openai.url,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
            WHALLI_XAI_API_KEY=API_KEY, WHALLI_XAI_BASE_URL=xai.url,
            WHALLI_OPENAI_COMPATIBLE_BASE_URL=compatible.url,
            WHALLI_OPENAI_COMPATIBLE_API_KEY=API_KEY,
            WHALLI_CATALOG_PATH=str(path), WHALLI_PROVIDER_MAX_ATTEMPTS="1",
            WHALLI_CHAT_TITLES="off",
        )  # fmt: skip
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            chat = Chat(World(client, container), openai)  # type: ignore[arg-type]
            yield Providers(chat, openai, anthropic, xai, compatible, ids)


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[Providers]:
    async with _providers(stack_urls, unique, tmp_path) as providers:
        yield providers


def _problem(response: Any, status: int | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


async def _import(hunt: Providers, auth: dict[str, str], turns: list[str]) -> str:
    response = await hunt.client.post(
        "/api/chats/import",
        json={"format": "chatgpt", "conversations": [_talk(turns, "imported")]},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    [imported] = response.json()["imported"]
    chat_id: str = imported["chatId"]
    return chat_id


def _estimate(messages: list[dict[str, Any]]) -> int:
    total = 0
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = "\n\n".join(b.get("text", "") for b in content)
        total += estimate_tokens(content or "") + OVERHEAD
    return total


async def _ask(
    hunt: Providers, auth: dict[str, str], **body: Any
) -> tuple[dict[str, Any], list[tuple[str | None, str, dict[str, Any]]]]:
    started = await hunt.chat.start(auth, **body)
    events = await hunt.chat.events(started["sessionId"])
    return started, events


# === a fallback's window ==========================================================================
async def test_a_fallback_with_a_smaller_window_gets_a_prompt_trimmed_to_its_own_window(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _providers(stack_urls, unique, tmp_path, failing=frozenset({"s23-big"})) as hunt:
        ada = await hunt.chat.world.register("ada")
        turns = [f"turn {i:02d} " + "x" * 390 for i in range(30)]  # ~100 tokens each, ~3,000
        chat_id = await _import(hunt, ada["auth"], turns)
        before = len(hunt.openai.requests)
        _, events = await _ask(
            hunt, ada["auth"], model=hunt.ids["big"], chatId=chat_id, message="the newest"
        )
        asked = [r.body["model"] for r in hunt.openai.requests[before:]]
        assert asked == ["s23-big", "s23-small"], asked  # the model, then its fallback
        assert _estimate(hunt.openai.requests[before].body["messages"]) > SMALL  # all of it
        assert events[-1][1] == "done", events[-1]
        sent = hunt.openai.requests[-1].body["messages"]
        assert sent[-1] == {"role": "user", "content": "the newest"}
        # the fallback refuses (context_length_exceeded) a prompt longer than its window
        assert _estimate(sent) <= SMALL - min(1024, SMALL // 4), _estimate(sent)


# === Anthropic's turns ============================================================================
def _roles(body: dict[str, Any]) -> list[str]:
    return [turn["role"] for turn in body["messages"]]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(block.get("text", "") for block in content if block["type"] == "text")


def _assert_anthropic_rules(body: dict[str, Any]) -> None:
    """What the Messages API refuses: a system role among the turns, turns that do not
    alternate starting with the user's, an empty turn, no max_tokens, temperature above 1."""
    roles = _roles(body)
    assert roles, body
    assert roles[0] == "user", roles
    assert roles[-1] == "user", roles
    assert all(a != b for a, b in itertools.pairwise(roles)), roles
    for turn in body["messages"]:
        assert _text_of(turn["content"]).strip(), turn
    assert isinstance(body.get("max_tokens"), int), body
    assert body["max_tokens"] >= 1, body
    assert 0 <= body.get("temperature", 0) <= 1, body


async def test_claude_after_a_failed_reply_gets_one_user_turn_holding_both_questions(
    hunt: Providers,
) -> None:
    ada = await hunt.chat.world.register("ada")
    hunt.anthropic.script(
        Reply(status=400, body=anthropic_error("invalid_request_error", "Bad request."))
    )
    first, events = await _ask(hunt, ada["auth"], model=hunt.ids["claude"], message="Q-one")
    assert events[-1][1] == "error", events[-1]
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids["claude"], chatId=first["chatId"], message="Q-two"
    )
    assert events[-1][1] == "done", events[-1]
    body = hunt.anthropic.requests[-1].body
    _assert_anthropic_rules(body)
    assert _roles(body) == ["user"]
    assert _text_of(body["messages"][0]["content"]) == "Q-one\n\nQ-two"


async def test_claude_continuing_an_openai_chat_with_a_system_prompt_gets_it_apart(
    hunt: Providers,
) -> None:
    ada = await hunt.chat.world.register("ada")
    first, events = await _ask(
        hunt, ada["auth"], model=hunt.ids["small"], message="Q-one", systemPrompt="  Be brief.  "
    )
    assert events[-1][1] == "done", events[-1]
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids["claude"], chatId=first["chatId"], message="Q-two",
        params={"temperature": 1.7, "maxTokens": 300},
    )  # fmt: skip
    assert events[-1][1] == "done", events[-1]
    body = hunt.anthropic.requests[-1].body
    _assert_anthropic_rules(body)
    system = body["system"]
    assert _text_of(system) == "Be brief."
    assert _roles(body) == ["user", "assistant", "user"]
    assert [_text_of(t["content"]) for t in body["messages"]] == [
        "Q-one", "Hello, world!", "Q-two",
    ]  # fmt: skip
    assert body["max_tokens"] == 300


# === parameters per provider ======================================================================
@pytest.mark.parametrize(
    ("which", "key"),
    [("small", "max_completion_tokens"), ("grok", "max_tokens"), ("local", "max_tokens")],
)
async def test_max_tokens_and_temperature_reach_each_openai_wire_provider_by_its_name(
    hunt: Providers, which: str, key: str
) -> None:
    ada = await hunt.chat.world.register("ada")
    server = {"small": hunt.openai, "grok": hunt.xai, "local": hunt.compatible}[which]
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids[which], message=f"Q {uuid.uuid4()}",
        params={"temperature": 1.5, "maxTokens": 77},
    )  # fmt: skip
    assert events[-1][1] == "done", events[-1]
    body = server.requests[-1].body
    assert body[key] == 77
    assert body["temperature"] == 1.5


async def test_a_fallback_is_never_asked_for_more_tokens_than_its_window_holds(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _providers(stack_urls, unique, tmp_path, failing=frozenset({"s23-big"})) as hunt:
        ada = await hunt.chat.world.register("ada")
        before = len(hunt.openai.requests)
        _, events = await _ask(
            hunt, ada["auth"], model=hunt.ids["big"], message=f"Q {uuid.uuid4()}",
            params={"maxTokens": 3000},  # fits the big model's 8,000, not the fallback's 2,000
        )  # fmt: skip
        asked = [r.body["model"] for r in hunt.openai.requests[before:]]
        assert asked == ["s23-big", "s23-small"], asked
        assert events[-1][1] == "done", events[-1]
        body = hunt.openai.requests[-1].body
        # OpenAI refuses a prompt and a completion cap that together exceed the window
        assert _estimate(body["messages"]) + body["max_completion_tokens"] <= SMALL, body


# === maxTokens and the window =====================================================================
async def test_a_max_tokens_leaving_no_room_for_a_short_message_names_max_tokens(
    hunt: Providers,
) -> None:
    ada = await hunt.chat.world.register("ada")
    before = hunt.all_requests()
    response = await hunt.client.post(
        "/api/chat/start",
        json={"model": hunt.ids["big"], "message": "hi", "params": {"maxTokens": BIG - 1}},
        headers=ada["auth"],
    )
    problem = _problem(response, 422)
    assert hunt.all_requests() == before
    chats = await hunt.client.get("/api/chats", headers=ada["auth"])
    assert chats.json()["items"] == []  # nothing saved
    assert problem["field"] == "maxTokens", problem


async def test_a_max_tokens_at_the_window_is_a_422_naming_max_tokens(hunt: Providers) -> None:
    ada = await hunt.chat.world.register("ada")
    response = await hunt.client.post(
        "/api/chat/start",
        json={"model": hunt.ids["grok"], "message": "hi", "params": {"maxTokens": BIG}},
        headers=ada["auth"],
    )
    problem = _problem(response, 422)
    assert problem["field"] == "maxTokens", problem
    assert len(hunt.xai.requests) == 0


# === text as the user wrote it ====================================================================
ODD = "  crlf\r\nline\u2028sep \U0001f600 e\u0301 \u202eRTL\u202c nbsp\u00a0 \u4e2d\u6587 \ttab  "


@pytest.mark.parametrize("which", ["small", "claude"])
async def test_a_message_of_odd_unicode_reaches_the_provider_unchanged_in_every_turn(
    hunt: Providers, which: str
) -> None:
    ada = await hunt.chat.world.register("ada")
    server = hunt.openai if which == "small" else hunt.anthropic
    first, events = await _ask(hunt, ada["auth"], model=hunt.ids[which], message=ODD)
    assert events[-1][1] == "done", events[-1]
    assert _text_of(server.requests[-1].body["messages"][-1]["content"]) == ODD
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids[which], chatId=first["chatId"], message="next " + ODD
    )
    assert events[-1][1] == "done", events[-1]
    sent = [_text_of(t["content"]) for t in server.requests[-1].body["messages"]]
    assert sent == [ODD, "Hello, world!", "next " + ODD]


async def test_claude_after_a_stopped_reply_gets_alternating_turns_without_its_partial_text(
    hunt: Providers,
) -> None:
    ada = await hunt.chat.world.register("ada")
    first, events = await _ask(hunt, ada["auth"], model=hunt.ids["claude"], message="Q-one")
    assert events[-1][1] == "done", events[-1]
    gate = asyncio.Event()  # never set: the reply waits after its first piece of text
    hunt.anthropic.script(
        Reply(chunks=anthropic_stream(["Partial-xyz", " rest"]), gate=gate, gate_after=4)
    )
    started = await hunt.chat.start(
        ada["auth"], model=hunt.ids["claude"], chatId=first["chatId"], message="Q-two"
    )
    partial = await hunt.chat.events(started["sessionId"], limit=1)
    assert partial[0][1:] == ("token", {"delta": "Partial-xyz"}), partial
    stopped = await hunt.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=ada["auth"]
    )
    assert stopped.status_code == 202, stopped.text
    events = await hunt.chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids["claude"], chatId=first["chatId"], message="Q-three"
    )
    assert events[-1][1] == "done", events[-1]
    body = hunt.anthropic.requests[-1].body
    _assert_anthropic_rules(body)
    sent = [_text_of(t["content"]) for t in body["messages"]]
    assert sent == ["Q-one", "Hello, world!", "Q-two\n\nQ-three"], sent


# === images to xAI ================================================================================
@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("anim.gif", b"GIF89a" + bytes(range(256)) * 8),
        ("pic.webp", b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(256)),
    ],
)
async def test_xai_gets_an_attached_image_of_a_type_it_does_not_take_as_its_text(
    hunt: Providers, pg_pool: PostgresPool, name: str, data: bytes
) -> None:
    ada = await hunt.chat.world.register("ada")
    png = await upload_png(hunt.chat, pg_pool, ada, PNG, "photo.png")
    other = await upload_png(hunt.chat, pg_pool, ada, data, name)
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids["grok_vision"], message=f"Look {uuid.uuid4()}",
        attachmentIds=[png, other],
    )  # fmt: skip
    sent = hunt.xai.requests[-1]
    urls = image_parts(sent)
    assert urls, "no image sent"
    assert urls[0].startswith("data:image/png;base64,"), urls[0][:30]  # vision works
    assert events[-1][1] == "done", events[-1]
    # xAI takes jpg/jpeg and png only: this one goes as its (OCR) text
    assert urls == [urls[0]], [u[:30] for u in urls]
    texts = [p["text"] for p in sent.body["messages"][-1]["content"] if p["type"] == "text"]
    assert any(t.startswith(f"Attached file: {name}\nOCR of {name}") for t in texts), texts


# === images to Anthropic ==========================================================================
def _png(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk declaring ``width`` x ``height`` (and a little more)."""
    header = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header))
    return b"\x89PNG\r\n\x1a\n" + chunk + bytes(range(256)) * 4


async def test_claude_gets_an_image_past_its_8000_pixel_limit_as_its_text(
    hunt: Providers, pg_pool: PostgresPool
) -> None:
    ada = await hunt.chat.world.register("ada")
    small = await upload_png(hunt.chat, pg_pool, ada, _png(640, 480), "small.png")
    huge = await upload_png(hunt.chat, pg_pool, ada, _png(9000, 9000), "huge.png")
    _, events = await _ask(
        hunt, ada["auth"], model=hunt.ids["claude"], message=f"Look {uuid.uuid4()}",
        attachmentIds=[small, huge],
    )  # fmt: skip
    assert events[-1][1] == "done", events[-1]
    content = hunt.anthropic.requests[-1].body["messages"][-1]["content"]
    kinds = [block["type"] for block in content]
    assert kinds[:2] == ["text", "image"], kinds  # the small one goes as an image
    assert content[0]["text"] == "Attached image: small.png"
    # Anthropic rejects an image larger than 8000x8000 px: this one goes as its (OCR) text
    assert kinds == ["text", "image", "text"], kinds
    assert content[2]["text"].startswith("Attached file: huge.png\nOCR of huge.png"), content[2]
