"""Hunt S23 of this session's own fixes on the chat and identity paths (ecea2dc): stream
session ids and reader passes bound to the credential that opened them (does a legitimate
reader keep streaming across a refresh, a second credential, a co-member's own sign-out; is
an expired key or a changed password refused), the search index kept by a trigger (migration
0025: found for every path that writes a message, untouched by updates of other columns),
fallbacks sent a prompt rebuilt for their own window and Claude's default reply cap of 8,192.
Through the real app on uvicorn (Postgres, Redis, S3) with loopback providers. Defects are
``xfail(strict=True)``, asserting the correct behaviour."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_attach_elsewhere import team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_chat_races import (
    RaceChat,
    _race_app,
    blocking,
    read_chat,
    settled,
    until_done,
    until_waiting_or_done,
    usage,
)
from tests.integration.http.test_identity_end_to_end import PASSWORD, World, _settings
from tests.integration.http.test_reasoning_files_hunt import image_parts, upload_png
from tests.integration.http.test_s21_hunt_chats import _talk
from tests.integration.http.test_s23_hunt_context import SHIPPED, _failing, _model, _png
from tests.integration.http.test_s23_hunt_periphery import _exchange, _import, _search
from tests.integration.http.test_s23_hunt_races import _gated, _read, _status, _text
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    anthropic_default,
    openai_default,
)
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.postgres.pool import PostgresPool
from whalli.container import build_container
from whalli.domain.services.chat.context import estimate_tokens
from whalli.entrypoints.http.asgi import build_app
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY

MODEL = "openai/gpt-4o-mini"
ECHO = "dev/echo"
GRACE_S = 2.2  # past attach_stream.START_READ_GRACE: an attach by id alone reads the user again


@pytest.fixture
async def race(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[RaceChat]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_TITLES="off") as chat,
    ):
        yield chat


async def _pass_of(chat: RaceChat, chat_id: str, auth: dict[str, str]) -> str:
    """The reader pass ``GET /api/chats/{id}`` shows ``auth``'s caller for the last reply."""
    response = await read_chat(chat, chat_id, auth)
    assert response.status_code == 200, response.text
    reply = response.json()["messages"][-1]
    assert reply["role"] == "assistant", reply
    reader_pass: str = reply["sessionId"]
    assert reader_pass is not None, reply
    assert "." in reader_pass, reply
    return reader_pass


def _url(value: str) -> str:
    return f"/api/chat/stream?sessionId={value}"


# === legitimate readers keep reading ==============================================================
async def test_s23f_a_token_refresh_keeps_the_session_id_and_the_reader_pass_streaming(
    race: RaceChat,
) -> None:
    """A chat app refreshes its access token every 15 minutes (the refresh token rotates): the
    login session is the refresh-token family, so what was handed out before the refresh (the
    start's session id, the chat read's pass) still admits its holder used alone."""
    chat = race
    alice = await chat.world.register("alice")
    gate = _gated(chat, ["kept", " going"])
    try:
        started = await chat.start(alice["auth"], model=MODEL, message=f"q {uuid.uuid4()}")
        assert _text(await _read(chat, started["sessionId"], limit=1)) == "kept"
        reader_pass = await _pass_of(chat, started["chatId"], alice["auth"])
        refreshed = await chat.client.post(
            "/api/auth/refresh", json={"refreshToken": alice["tokens"]["refreshToken"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        await asyncio.sleep(GRACE_S)  # (so that the id alone is checked against the database)
        seen = (
            await _status(chat, _url(started["sessionId"])),
            await _status(chat, _url(reader_pass)),
        )
    finally:
        gate.set()
        await settled(chat)
    assert seen == (200, 200), seen


async def test_s23f_a_co_members_sign_out_ends_their_pass_not_the_owners_session_id(
    race: RaceChat,
) -> None:
    """Each holder is bound to their own credential: a viewer's pass (alone) streams until the
    viewer signs out everywhere, then 404; the owner's session id and pass go on streaming."""
    chat = race
    owner = await chat.world.register("owner")
    viewer = await chat.world.register("viewer")
    project_id, _ = await team_project(chat, owner, viewer, "viewer")
    gate = _gated(chat, ["shared", " words"])
    try:
        started = await chat.start(
            owner["auth"], model=MODEL, message=f"team {uuid.uuid4()}", projectId=project_id
        )
        assert _text(await _read(chat, started["sessionId"], limit=1)) == "shared"
        viewers = await _pass_of(chat, started["chatId"], viewer["auth"])
        owners = await _pass_of(chat, started["chatId"], owner["auth"])
        before = await _status(chat, _url(viewers))
        out = await chat.client.post("/api/auth/logout-all", headers=viewer["auth"])
        assert out.status_code == 204, out.text
        after = (
            await _status(chat, _url(viewers)),
            await _status(chat, _url(owners)),
            await _status(chat, _url(started["sessionId"])),
        )
    finally:
        gate.set()
        await settled(chat)
    assert (before, after) == (200, (404, 200, 200)), (before, after)


async def test_s23f_after_a_password_change_the_old_pass_alone_is_refused_its_user_is_not(
    race: RaceChat,
) -> None:
    """A password change ends every login session: the pass read before it admits nobody used
    alone; the same user signed in with the new tokens still attaches (by pass or id)."""
    chat = race
    alice = await chat.world.register("alice")
    gate = _gated(chat, ["before", " after"])
    try:
        started = await chat.start(alice["auth"], model=MODEL, message=f"pw {uuid.uuid4()}")
        assert _text(await _read(chat, started["sessionId"], limit=1)) == "before"
        old_pass = await _pass_of(chat, started["chatId"], alice["auth"])
        changed = await chat.client.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": f"{PASSWORD} renewed {uuid.uuid4()}"},
            headers=alice["auth"],
        )
        assert changed.status_code == 200, changed.text
        fresh = {"Authorization": f"Bearer {changed.json()['accessToken']}"}
        alone = (
            await _status(chat, _url(old_pass)),
            await _status(chat, _url(started["sessionId"])),
        )
        new_pass = await _pass_of(chat, started["chatId"], fresh)
        signed_in = (
            await _status_with(chat, _url(started["sessionId"]), fresh),
            await _status(chat, _url(new_pass)),
        )
    finally:
        gate.set()
        await settled(chat)
    assert (alone, signed_in) == ((404, 404), (200, 200)), (alone, signed_in)


async def _status_with(chat: RaceChat, url: str, headers: dict[str, str]) -> int:
    async with chat.client.stream("GET", url, headers=headers) as response:
        return response.status_code


async def test_s23f_a_session_id_of_an_api_key_that_expired_by_time_admits_nobody(
    race: RaceChat,
) -> None:
    """A key that runs out (its ``expiresAt``), not revoked: the session id it was handed out
    under admits nobody alone once it has; its owner signed in still attaches."""
    chat = race
    alice = await chat.world.register("alice")
    expires = datetime.now(UTC) + timedelta(seconds=4)
    made = await chat.client.post(
        "/api/keys", json={"name": "short", "expiresAt": expires.isoformat()},
        headers=alice["auth"],
    )  # fmt: skip
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['secret']}"}
    gate = _gated(chat, ["ticking", " clock"])
    try:
        started = await chat.start(key, model=MODEL, message=f"k {uuid.uuid4()}")
        assert _text(await _read(chat, started["sessionId"], limit=1)) == "ticking"
        # waiting for the key's expiry (a date, not a speed check)
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
        assert (await chat.client.get("/api/chats", headers=key)).status_code == 401
        seen = (
            await _status(chat, _url(started["sessionId"])),
            await _status_with(chat, _url(started["sessionId"]), alice["auth"]),
        )
    finally:
        gate.set()
        await settled(chat)
    assert seen == (404, 200), seen


# === search kept by a trigger (migration 0025) ====================================================
def _word() -> str:
    return "qf" + uuid.uuid4().hex[:12]


async def _found(chat: Chat, auth: dict[str, str], word: str) -> set[str]:
    return {hit["chatId"] for hit in await _search(chat, auth, word)}


@pytest.fixture
async def searching(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with chat_app(
        stack_urls, unique, WHALLI_CHAT_TITLES="off", WHALLI_CHAT_PROGRESS_EVERY_S="0.2"
    ) as chat:
        yield chat


async def test_s23f_search_follows_edits_regenerations_versions_forks_and_imports(
    searching: Chat,
) -> None:
    """Every path that writes a message's text reindexes it, and only it: an edited question
    is found by its new words (not its old ones), a regenerated reply by its own, a restored
    version by its text again, a fork's copies and an import's messages by theirs; renaming,
    pinning or archiving the chat (other columns) leaves its messages found."""
    chat = searching
    ada = await chat.world.register("ada")
    auth = ada["auth"]
    first = await chat.start(auth, model=ECHO, message="hello there")
    assert (await chat.events(first["sessionId"]))[-1][1] == "done"
    chat_id = first["chatId"]
    old, new = _word(), _word()
    second = await chat.start(auth, model=ECHO, message=f"tell {old}", chatId=chat_id)
    assert (await chat.events(second["sessionId"]))[-1][1] == "done"
    assert await _found(chat, auth, old) == {chat_id}

    edited = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id, "message": f"say {new}"}, headers=auth
    )
    assert edited.status_code == 201, edited.text
    assert (await chat.events(edited.json()["sessionId"]))[-1][1] == "done"
    # the echoed reply and the edited question hold the new word; the old one is only in the
    # earlier version of the reply (never found) and in no live message
    assert (await _found(chat, auth, new), await _found(chat, auth, old)) == ({chat_id}, set())

    for change in ({"title": f"renamed {uuid.uuid4().hex[:6]}"}, {"pinned": True}):
        patched = await chat.client.patch(f"/api/chats/{chat_id}", json=change, headers=auth)
        assert patched.status_code == 200, patched.text
    assert await _found(chat, auth, new) == {chat_id}

    # restore the first reply: the question takes back the old text, the old reply returns
    read = await chat.client.get(f"/api/chats/{chat_id}", headers=auth)
    reply_id = read.json()["messages"][-1]["id"]
    versions = await chat.client.get(
        f"/api/chats/{chat_id}/messages/{reply_id}/versions", headers=auth
    )
    assert versions.status_code == 200, versions.text
    [version] = versions.json()["items"]
    restored = await chat.client.post(
        f"/api/chats/{chat_id}/messages/{version['id']}/restore", headers=auth
    )
    assert restored.status_code == 200, restored.text
    assert (await _found(chat, auth, old), await _found(chat, auth, new)) == ({chat_id}, set())

    forked = await chat.client.post(f"/api/chats/{chat_id}/fork", json={}, headers=auth)
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["id"]
    assert await _found(chat, auth, old) == {chat_id, fork_id}

    imported_word = _word()
    [imported] = await _import(chat, auth, [_exchange("plain question", f"reply {imported_word}")])
    assert await _found(chat, auth, imported_word) == {imported}


async def test_s23f_a_reply_still_being_written_is_found_by_its_checkpointed_words(
    searching: Chat,
) -> None:
    """A reply's text so far is saved every few seconds (status ``streaming``), by an update of
    its content: the trigger indexes each checkpoint, so its words are found before its end."""
    chat = searching
    ada = await chat.world.register("ada")
    word = _word()
    gate = asyncio.Event()
    chat.provider.script(
        Reply(chunks=openai_pieces([word, " later"], usage=(9, 2)), gate=gate, gate_after=2)
    )
    try:
        started = await chat.start(ada["auth"], model=MODEL, message="write it")
        first = await chat.events(started["sessionId"], limit=1)
        assert first[0][2]["delta"] == word
        found: set[str] = set()
        for _ in range(100):  # until a checkpoint was written (a bound, not a deadline)
            found = await _found(chat, ada["auth"], word)
            if found:
                break
            await asyncio.sleep(0.1)
    finally:
        gate.set()
    assert found == {started["chatId"]}
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"


# === Claude's default reply cap and fallbacks' prompts ===========================================
SMALL_CLAUDE = 8000


@asynccontextmanager
async def _models(
    stack_urls: StackUrls, unique: str, tmp_path: Path, *entries: str, failing: set[str]
) -> AsyncIterator[tuple[Chat, dict[str, FakeProviderServer]]]:
    path = tmp_path / "models.toml"
    path.write_text(SHIPPED.read_text() + "\n" + "\n".join(entries))
    async with (
        FakeProviderServer(_failing(failing)) as openai,
        FakeProviderServer(anthropic_default()) as anthropic,
        FakeProviderServer(openai_default()) as xai,
    ):
        settings = _settings(
            stack_urls, unique,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=openai.url,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
            WHALLI_XAI_API_KEY=API_KEY, WHALLI_XAI_BASE_URL=xai.url,
            WHALLI_CATALOG_PATH=str(path), WHALLI_PROVIDER_MAX_ATTEMPTS="1",
            WHALLI_CHAT_TITLES="off",
        )  # fmt: skip
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            chat = Chat(World(client, container), openai)  # type: ignore[arg-type]
            yield chat, {"openai": openai, "anthropic": anthropic, "xai": xai}


def _anthropic_prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = "\n\n".join(block.get("text", "") for block in content)
        total += estimate_tokens(content) + 4
    return total


@pytest.mark.parametrize("as_fallback", [False, True])
async def test_s23f_claudes_default_reply_cap_fits_the_window_left_by_its_prompt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path,
    as_fallback: bool,
) -> None:  # fmt: skip
    """README: "Without maxTokens a Claude reply is sent 8,192, or the model's output cap when
    lower, and the trimming keeps that room". ``ContextLimits.build`` keeps at most a quarter
    of the window (2,000 of an 8,000-token window) while ``ModelSpec.default_max_tokens`` sends
    8,192: more than the whole window, which Anthropic refuses with the prompt. Asked directly
    and as the fallback of a failing OpenAI model (``PromptSource.for_fallback``)."""
    tag = f"s23f-{unique}"
    claude, primary = f"anthropic/{tag}-claude", f"openai/{tag}-primary"
    entries = (
        _model(claude, "anthropic", f"{tag}-claude", SMALL_CLAUDE),
        _model(primary, "openai", f"{tag}-primary", 100_000, fallback=claude),
    )
    async with _models(stack_urls, unique, tmp_path, *entries, failing={f"{tag}-primary"}) as (
        chat,
        servers,
    ):
        ada = await chat.world.register("ada")
        history = [" ".join(f"w{i}x{j}" for j in range(600)) for i in range(8)]
        chat_id = await _import_turns(chat, ada["auth"], history)
        started = await chat.start(
            ada["auth"], model=primary if as_fallback else claude,
            message=f"go on {uuid.uuid4()}", chatId=chat_id,
        )  # fmt: skip
        events = await chat.events(started["sessionId"])
        assert events[-1][1] == "done", events[-1]
        body = servers["anthropic"].requests[-1].body
    assert _anthropic_prompt_tokens(body) + body["max_tokens"] <= SMALL_CLAUDE, (
        _anthropic_prompt_tokens(body),
        body["max_tokens"],
    )


async def _import_turns(chat: Chat, auth: dict[str, str], texts: list[str]) -> str:
    response = await chat.client.post(
        "/api/chats/import",
        json={"format": "chatgpt", "conversations": [_talk(texts, "imported")]},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    [imported] = response.json()["imported"]
    chat_id: str = imported["chatId"]
    return chat_id


GIF = b"GIF89a" + bytes(range(256)) * 8


@pytest.mark.parametrize("fallback", ["xai", "anthropic"])
async def test_s23f_a_fallback_gets_an_image_its_provider_refuses_as_its_text(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path,
    pg_pool: PostgresPool, fallback: str,
) -> None:  # fmt: skip
    """An OpenAI vision model is sent an attached GIF (OpenAI reads it) or a 9000-pixel PNG
    (OpenAI scales it), and fails; its vision fallback is xAI (PNG and JPEG only) or Claude
    (at most 8000 pixels a side). Asked directly, either model gets that file as its text
    (``prompt_files``: "the reply never fails for it"); as the fallback it is sent the image
    built for OpenAI, its adapter refuses it before the call (``provider_rejected_request``),
    and the reply fails although the fallback could have answered."""
    tag = f"s23f-{unique}"
    other = f"{fallback}/{tag}-eye"
    primary = f"openai/{tag}-primary-eye"
    entries = (
        _model(other, fallback, f"{tag}-eye", 100_000, vision=True),
        _model(primary, "openai", f"{tag}-primary-eye", 100_000, vision=True, fallback=other),
    )
    name, data = ("anim.gif", GIF) if fallback == "xai" else ("huge.png", _png(9000, 9000))
    async with _models(stack_urls, unique, tmp_path, *entries, failing={f"{tag}-primary-eye"}) as (
        chat,
        servers,
    ):
        ada = await chat.world.register("ada")
        attachment = await upload_png(chat, pg_pool, ada, data, name)
        started = await chat.start(
            ada["auth"], model=primary, message=f"Look {uuid.uuid4()}", attachmentIds=[attachment]
        )
        events = await chat.events(started["sessionId"])
        asked_primary = image_parts(servers["openai"].requests[-1])
        assert len(asked_primary) == 1, "the model asked for reads it as an image"
        assert events[-1][1] == "done", events[-1]
        sent = servers[fallback].requests[-1].body
    texts = [
        m["content"] if isinstance(m["content"], str) else "\n\n".join(
            block.get("text", "") for block in m["content"]
        )
        for m in sent["messages"]
    ]  # fmt: skip
    assert any(f"Attached file: {name}\nOCR of {name}" in text for text in texts), texts


async def test_s23f_v1_claudes_default_reply_cap_fits_what_the_prompt_leaves(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A /v1 client sends its whole conversation (nothing is trimmed there) and no
    ``max_tokens``: Claude is sent 8,192 even when the prompt leaves less of the model's window
    (here about 3,900 of 8,000 left); with the former default of 1,024 it fit. The cap sent by
    default should be what the window leaves (at most 8,192), as the chat path keeps that room."""
    tag = f"s23f-{unique}"
    claude = f"anthropic/{tag}-claude"
    async with _models(
        stack_urls, unique, tmp_path,
        _model(claude, "anthropic", f"{tag}-claude", SMALL_CLAUDE), failing=set(),
    ) as (chat, servers):  # fmt: skip
        ada = await chat.world.register("ada")
        made = await chat.client.post("/api/keys", json={"name": "v1"}, headers=ada["auth"])
        assert made.status_code == 201, made.text
        text = " ".join(f"w{j}x" for j in range(3000))
        assert estimate_tokens(text) + 1024 <= SMALL_CLAUDE - 100  # it fit the former default
        answer = await chat.client.post(
            "/v1/chat/completions",
            json={"model": claude, "messages": [{"role": "user", "content": text}]},
            headers={"Authorization": f"Bearer {made.json()['secret']}"},
        )
        assert answer.status_code == 200, answer.text
        body = servers["anthropic"].requests[-1].body
    assert _anthropic_prompt_tokens(body) + body["max_tokens"] <= SMALL_CLAUDE, (
        _anthropic_prompt_tokens(body),
        body["max_tokens"],
    )


# === an account deleted while its reply is generated elsewhere ====================================


async def test_s23f_deleting_an_account_stops_its_reply_in_a_project_someone_else_owns(
    patient: RaceChat,
) -> None:
    """Its chats in projects it does not own go with the account (the schema cascades): the
    reply it is generating there is asked to stop too, not only those of its own projects."""
    chat = patient
    owner = await chat.world.register("owner")
    member = await chat.world.register("member")
    project_id, _ = await team_project(chat, owner, member, "editor")
    chat.provider.script(Reply(chunks=openai_pieces(["endless"], usage=None)[:-2], hold=True))
    started = await chat.start(
        member["auth"], model=MODEL, message=f"long {uuid.uuid4()}", projectId=project_id
    )
    assert _text(await _read(chat, started["sessionId"], limit=1)) == "endless"
    gone = await chat.client.request(
        "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=member["auth"]
    )
    assert gone.status_code == 204, gone.text
    try:  # generous: a stop's poll is 0.25 s; the provider's own idle timeout is 300 s
        await asyncio.wait_for(chat.provider.disconnected.wait(), 10)
        closed = True
    except TimeoutError:
        closed = False
    finally:
        if not closed:  # end it, so the test leaves nothing running
            stream = await resolved(chat.world.container.adapters.reply_stream())
            await stream.request_stop(started["sessionId"], 60)
        await settled(chat)
    assert closed, "the provider call of the deleted member's reply was still open"
    owners_view = await chat.client.get(
        "/api/chats", params={"projectId": project_id}, headers=owner["auth"]
    )
    assert owners_view.status_code == 200, owners_view.text
    assert owners_view.json()["items"] == []


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_s23f_a_reply_stopped_by_its_chats_deletion_is_billed_counted_and_ended(
    patient: RaceChat,
) -> None:
    """The deletion stops the provider call mid-reply: the tokens used so far still count as
    the user's usage (once), the request counts as ``chat_deleted`` in the metrics, and a
    reader resuming gets the ``chat_deleted`` end (README: "Every stream ends with done or
    error")."""
    chat = patient
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    scraped = await chat.client.get("/api/metrics")
    counted = _metric(scraped.text, "whalli_chat_requests_total", status="chat_deleted")
    chat.provider.script(Reply(chunks=openai_pieces(["partial"], usage=None)[:-2], hold=True))
    started = await chat.start(alice["auth"], model=MODEL, message=f"doomed {uuid.uuid4()}")
    first = await _read(chat, started["sessionId"], limit=1)
    assert _text(first) == "partial"
    gone = await chat.client.delete(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert gone.status_code == 204, gone.text
    try:
        await asyncio.wait_for(chat.provider.disconnected.wait(), 10)
    finally:
        if not chat.provider.disconnected.is_set():
            stream = await resolved(chat.world.container.adapters.reply_stream())
            await stream.request_stop(started["sessionId"], 60)
        await settled(chat)
    rest = await _read(chat, started["sessionId"], headers={"Last-Event-ID": str(first[-1][0])})
    assert (rest[-1][1], rest[-1][2].get("code")) == ("error", "chat_deleted"), rest
    spent = await usage(chat, alice, before)
    assert spent.requests == 1
    assert spent.completion_tokens >= 1
    scraped = await chat.client.get("/api/metrics")
    after = _metric(scraped.text, "whalli_chat_requests_total", status="chat_deleted")
    assert after == counted + 1


# === the 2 s fast path and an end committed in this very process ==================================
@asynccontextmanager
async def _clocked(
    stack_urls: StackUrls, unique: str, provider: FakeProviderServer, clock: ManualClock
) -> AsyncIterator[RaceChat]:
    settings = _settings(
        stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url,
        WHALLI_PROVIDER_MAX_ATTEMPTS="2", WHALLI_CHAT_TITLES="off",
    )  # fmt: skip
    container = build_container(settings)
    container.adapters.clock.override(providers.Object(clock))
    app = build_app(settings, container)
    generations = app.state[CONTAINER_STATE_KEY].generations
    async with live_server(app) as client:
        world = World(client, container)  # type: ignore[arg-type]
        yield RaceChat(world, provider, generations, stack_urls.database_url)


@pytest.mark.parametrize("ended", ["logout-all", "revoked key"])
async def test_s23f_an_end_committed_in_this_process_after_a_start_read_the_user_is_seen(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, ended: str
) -> None:
    """README: the fast path trusts the start's read "unless that process ended one of their
    credentials since (so only one ended in another process within those 2 s is not seen)".
    Here one process ends it: the logout-all (or the key's revocation) takes its time, then
    waits on a row lock to write; meanwhile a start authenticates (the credential still in
    force) and reads the user after that time; the end commits and is noted at its earlier
    time, so ``ended_since(start's read)`` says no and the session id alone is admitted
    without a read. The clock is a manual one (moved 1 ms between the two): no timing."""
    clock = ManualClock(datetime.now(UTC))
    async with (
        FakeProviderServer(openai_default()) as provider,
        _clocked(stack_urls, unique, provider, clock) as chat,
    ):
        alice = await chat.world.register("alice")
        credential = alice["auth"]
        if ended == "logout-all":
            lock = ("SELECT id FROM refresh_tokens WHERE user_id = %(id)s FOR UPDATE", "UPDATE")
            params: dict[str, Any] = {"id": alice["user"]["id"]}
        else:
            made = await chat.client.post("/api/keys", json={"name": "k"}, headers=alice["auth"])
            assert made.status_code == 201, made.text
            credential = {"Authorization": f"Bearer {made.json()['secret']}"}
            # used once: its lastUsedAt is then not written again (which would wait on the lock)
            assert (await chat.client.get("/api/chats", headers=credential)).status_code == 200
            lock = ("SELECT id FROM api_keys WHERE id = %(id)s FOR UPDATE", "UPDATE")
            params = {"id": made.json()["id"]}
        gate = _gated(chat, ["one", " two"])
        try:
            async with blocking(chat.database_url, (lock[0], params)) as until_waiting:
                if ended == "logout-all":
                    call = chat.client.post("/api/auth/logout-all", headers=alice["auth"])
                else:
                    call = chat.client.delete(f"/api/keys/{params['id']}", headers=alice["auth"])
                ending = asyncio.create_task(call)
                await until_waiting_or_done(until_waiting, ending, lock[1])
                assert not ending.done(), "the end did not wait on the lock"
                clock.advance(0.001)
                started = await asyncio.wait_for(
                    chat.start(credential, model=MODEL, message=f"q {uuid.uuid4()}"), 30
                )
            assert (await until_done(ending)).status_code in (200, 204)
            assert (await chat.client.get("/api/chats", headers=credential)).status_code == 401
            status = await _status(chat, _url(started["sessionId"]))
        finally:
            gate.set()
            await settled(chat)
    assert status == 404, "the session id alone streamed after its credential ended"


async def test_s23f_a_chat_deleted_through_another_process_stops_the_provider_call(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The reply is generated by one API process, the chat deleted through another: the stop
    is a flag in the shared store, so the generating process still closes the upstream call
    and a reader of either process gets ``chat_deleted``."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(
            stack_urls, unique, provider, WHALLI_CHAT_TITLES="off",
            WHALLI_PROVIDER_IDLE_TIMEOUT_S="300",
        ) as one,
        _race_app(
            stack_urls, unique, provider, WHALLI_CHAT_TITLES="off",
            WHALLI_PROVIDER_IDLE_TIMEOUT_S="300",
        ) as other,
    ):  # fmt: skip
        alice = await one.world.register("alice")
        provider.script(Reply(chunks=openai_pieces(["held"], usage=None)[:-2], hold=True))
        started = await one.start(alice["auth"], model=MODEL, message=f"far {uuid.uuid4()}")
        first = await _read(one, started["sessionId"], limit=1)
        assert _text(first) == "held"
        gone = await other.client.delete(f"/api/chats/{started['chatId']}", headers=alice["auth"])
        assert gone.status_code == 204, gone.text
        try:
            await asyncio.wait_for(provider.disconnected.wait(), 10)
        finally:
            if not provider.disconnected.is_set():
                stream = await resolved(one.world.container.adapters.reply_stream())
                await stream.request_stop(started["sessionId"], 60)
            await settled(one)
        rest = await _read(
            other, started["sessionId"], headers={"Last-Event-ID": str(first[-1][0])}
        )
    assert (rest[-1][1], rest[-1][2].get("code")) == ("error", "chat_deleted"), rest


async def test_s23f_a_session_id_of_an_account_deleted_in_this_process_admits_nobody(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The attach's rules: "a disabled or deleted account is refused at once"; the fast path
    after a start is excused only for an end in another process. The account (and every
    login session of it) is deleted here, through this process, right after the start
    (a manual clock: no timing), yet its session id alone still opens the stream."""
    clock = ManualClock(datetime.now(UTC))
    async with (
        FakeProviderServer(openai_default()) as provider,
        _clocked(stack_urls, unique, provider, clock) as chat,
    ):
        alice = await chat.world.register("alice")
        gate = _gated(chat, ["mine", " only"])
        try:
            started = await chat.start(alice["auth"], model=MODEL, message=f"q {uuid.uuid4()}")
            gone = await chat.client.request(
                "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=alice["auth"]
            )
            assert gone.status_code == 204, gone.text
            status = await _status(chat, _url(started["sessionId"]))
        finally:
            gate.set()
            await settled(chat)
    assert status == 404, "the deleted account's session id still opened the stream"
