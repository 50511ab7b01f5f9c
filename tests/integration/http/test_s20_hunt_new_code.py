"""Hunt (s20, new code): the code of the last three commits attacked adversarially, through the
real app and container where it can be reached that way, else through the real adapters on the
real services (Postgres, Redis) with a loopback ``Cuttable`` proxy in front of them, and the
loopback fake providers or a raw socket server of the test's own.

Areas: the Postgres I/O deadline (``DeadlineConnection``), the reply relay's retried writes
(``_flush``/``_keep_trying``, the ``redis.pcall`` XADD), a reader riding out a Redis outage
(``ReadReplyHandler``), provider streams cut after their end was said, the output cap, and the
usage accounting changed with them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_chat_flow import _app
from tests.integration.http.test_s19_hunt_cache import with_usage
from tests.integration.http.test_s20_hunt_failures import (
    Cuttable,
    _chats_of,
    _host_port,
    _is_problem,
    _start_body,
    proxied,
)
from tests.integration.http.test_s20_hunt_usage import (
    World,
    _catalog,
    _world,
    counters,
    delta,
    openai_usage_stream,
    question,
    usage_of,
)
from tests.integration.http.test_v1_tools import TOOLS
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_error_event,
    anthropic_stream,
    openai_default,
    openai_stream,
    openai_tool_stream,
)
from whalli.adapters.ai._streaming import CHARS_PER_TOKEN
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.reply_relay import RelayedReplyStream
from whalli.adapters.redis.reply_stream import RedisReplyStream
from whalli.domain.model.replies import ErrorEvent, ReplyEvent, TokenEvent, is_final
from whalli.domain.services.chat.context import estimate_tokens
from whalli.domain.services.chat.read_reply import ReadReplyHandler


# --- helpers ----------------------------------------------------------------------------------
@asynccontextmanager
async def _redis(url: str) -> AsyncIterator[Redis]:
    async with asynccontextmanager(create_redis)(url) as client:
        yield client


@asynccontextmanager
async def _locked_user(database_url: str, user_id: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction holding ``FOR UPDATE`` on the user's row until the block ends: a statement
    that needs the row's key lock (an insert of one of their rows: its foreign key) waits."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", [user_id])
        yield conn


class Collected:
    """A ``ReadReplyHandler`` iteration consumed in the background."""

    def __init__(self, reader: ReadReplyHandler, session_id: str, after: str | None) -> None:
        self.items: list[list[tuple[str, ReplyEvent]] | None] = []
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run(reader, session_id, after))

    async def _run(self, reader: ReadReplyHandler, session_id: str, after: str | None) -> None:
        try:
            async for item in reader.events(session_id, after):
                self.items.append(item)
        except BaseException as e:
            self.error = e
        finally:
            self.ended.set()

    @property
    def events(self) -> list[tuple[str, ReplyEvent]]:
        return [event for item in self.items if item for event in item]

    async def until(self, test: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not test(self):
                await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _blink(proxy: Cuttable, seconds: float) -> None:
    """The service away for ``seconds``: its connections cut, new ones refused."""
    proxy.mode = "drop"
    proxy.cut()
    await asyncio.sleep(seconds)
    proxy.mode = "pass"


# --- Postgres: the I/O deadline -----------------------------------------------------------------
async def test_s20n_a_new_chat_whose_start_timed_out_with_a_503_is_not_created_afterwards(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A new chat is one autocommitted INSERT. Its statement waits (here on a lock; as well on
    a slow server) past WHALLI_DATABASE_IO_TIMEOUT_S: the client is answered 503 (nothing
    started, try again). psycopg's wait timeout does not cancel the statement on the server,
    and closing the connection does not stop a backend waiting on a lock: once the lock goes,
    the abandoned INSERT commits, and the user finds a chat (with a pending reply nobody will
    generate) that the 503 said was not made."""
    async with proxied(stack_urls, unique, WHALLI_DATABASE_IO_TIMEOUT_S="2") as (chat, _, _):
        alice = await chat.world.register("alice")
        user_id = alice["user"]["id"]
        async with _locked_user(stack_urls.database_url, user_id):
            refused = await chat.client.post(
                "/api/chat/start", json=_start_body(), headers=alice["auth"]
            )
            _is_problem(refused, 503)
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # the lock is gone: whatever still waited on it ran
        created = await _chats_of(stack_urls, user_id)
        print("provider calls:", len(chat.provider.requests), "chats:", created)
    assert created == 0, "the start answered 503, yet its chat was written afterwards"


async def test_s20n_after_an_io_timeout_the_pool_serves_the_next_requests_correctly(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Guard: a connection given up mid-exchange (its statement still running on the server)
    is not handed out again: with a pool of one connection, the requests after the 503 get
    their own answers."""
    async with proxied(
        stack_urls, unique, WHALLI_DATABASE_IO_TIMEOUT_S="2", WHALLI_DATABASE_POOL_MAX="1"
    ) as (chat, _, _):
        alice = await chat.world.register("alice")
        started = await chat.start(alice["auth"], **_start_body())
        await asyncio.wait_for(chat.events(started["sessionId"]), 15)
        async with _locked_user(stack_urls.database_url, alice["user"]["id"]):
            refused = await chat.client.post(
                "/api/chat/start", json=_start_body(), headers=alice["auth"]
            )
            _is_problem(refused, 503)
            listed = await chat.client.get("/api/chats", headers=alice["auth"])
            assert listed.status_code == 200, listed.text
            got = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
            assert got.status_code == 200, got.text
            assert got.json()["id"] == started["chatId"]
        again = await chat.start(alice["auth"], **_start_body())
        events = await asyncio.wait_for(chat.events(again["sessionId"]), 15)
        assert events[-1][1] == "done", events[-1]


# --- a reader riding out a Redis outage (ReadReplyHandler) ---------------------------------------
@asynccontextmanager
async def _reader_over_proxy(
    stack_urls: StackUrls, unique: str, **handler: Any
) -> AsyncIterator[tuple[ReadReplyHandler, RedisReplyStream, Cuttable]]:
    """A reader whose Redis is behind a ``Cuttable``, and a writer on Redis directly."""
    prefix = f"s20n-{unique}:"
    async with (
        Cuttable(*_host_port(stack_urls.redis_url)) as proxy,
        _redis(proxy.url(stack_urls.redis_url)) as through,
        _redis(stack_urls.redis_url) as direct,
    ):
        reader = ReadReplyHandler(RedisReplyStream(through, prefix), **handler)
        try:
            yield reader, RedisReplyStream(direct, prefix), proxy
        finally:
            async for key in direct.scan_iter(match=f"{prefix}*"):
                await direct.delete(key)


FINAL = ErrorEvent(code="s20n_final", message="the end")


async def test_s20n_a_reader_rides_out_a_second_redis_blink_long_after_the_first(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The outage clock starts at a failed read and should stop at the next read that works.
    It is reset only by a read that returns events: reads that work but find nothing (a slow
    reply, a model thinking in silence) leave it running, so a blink ``outage_s`` after an
    earlier one ends the reader at its first failed read instead of riding it out."""
    async with _reader_over_proxy(
        stack_urls, unique, heartbeat_s=0.3, track_readers=False, outage_s=1.5, retry_s=0.1
    ) as (reader, writer, proxy):
        session = f"s-{uuid.uuid4().hex}"
        await writer.mark_producing([session], 60_000)
        await writer.publish(session, TokenEvent(delta="one"), 60)
        got = Collected(reader, session, None)
        try:
            await got.until(lambda c: len(c.events) == 1)
            await _blink(proxy, 0.4)  # ridden out
            await asyncio.sleep(2.5)  # Redis answers again; nothing new to read meanwhile
            assert not got.ended.is_set(), "the reader ended after the first blink"
            await _blink(proxy, 0.4)  # a short blink again, well within outage_s
            await writer.publish(session, FINAL, 60)
            await got.until(lambda c: c.ended.is_set(), timeout=10)
        finally:
            await got.aclose()
        assert got.error is None, repr(got.error)
        assert [e for _, e in got.events][-1] == FINAL, got.events


async def test_s20n_a_reader_rides_out_a_redis_blink_and_gets_everything(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Guard: one blink shorter than ``outage_s``: heartbeats, then the events and the final."""
    async with _reader_over_proxy(
        stack_urls, unique, heartbeat_s=0.3, track_readers=False, outage_s=3.0, retry_s=0.1
    ) as (reader, writer, proxy):
        session = f"s-{uuid.uuid4().hex}"
        await writer.mark_producing([session], 60_000)
        await writer.publish(session, TokenEvent(delta="one"), 60)
        got = Collected(reader, session, None)
        try:
            await got.until(lambda c: len(c.events) == 1)
            await _blink(proxy, 0.8)
            await writer.publish(session, TokenEvent(delta=" two"), 60)
            await writer.publish(session, FINAL, 60)
            await got.until(lambda c: c.ended.is_set())
        finally:
            await got.aclose()
        assert got.error is None
        assert [e for _, e in got.events] == [TokenEvent(delta="one"), TokenEvent(delta=" two"),
                                              FINAL]  # fmt: skip
        assert None in got.items  # heartbeats kept the connection open meanwhile


# --- the relay's batched writes (RedisReplyStream.append, pcall'ed XADD) -------------------------
async def test_s20n_append_reports_a_session_whose_events_redis_refused(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """One write carries several sessions; one session's key is not a stream (WRONGTYPE). The
    XADD is ``redis.pcall``ed so that an id already stored is skipped, but pcall skips every
    error: the write reports success, the events are lost for every other process, and the
    session's reply is even marked ended. The failure should be raised (and so logged, and
    retried), not swallowed."""
    prefix = f"s20n-{unique}:"
    async with _redis(stack_urls.redis_url) as client:
        stream = RedisReplyStream(client, prefix)
        broken, fine = f"b-{uuid.uuid4().hex}", f"f-{uuid.uuid4().hex}"
        await client.set(f"{prefix}reply:{broken}", "not a stream", ex=60)
        ms = 1_700_000_000_000
        try:
            raised: Exception | None = None
            try:
                await stream.append(
                    [
                        (broken, [(f"{ms}-1", TokenEvent(delta="lost")), (f"{ms}-2", FINAL)]),
                        (fine, [(f"{ms}-1", TokenEvent(delta="kept")), (f"{ms}-2", FINAL)]),
                    ],
                    60,
                )
            except Exception as e:
                raised = e
            kept = await stream.read(fine, None, block_ms=0)
            assert [e for _, e in kept] == [TokenEvent(delta="kept"), FINAL]
            assert raised is not None, "append returned as if every event had been stored"
        finally:
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)


async def test_s20n_append_written_twice_stores_each_event_once_in_order(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Guard: a batch tried again (its answer lost) adds nothing twice, and what follows it
    lands after it."""
    prefix = f"s20n-{unique}:"
    async with _redis(stack_urls.redis_url) as client:
        stream = RedisReplyStream(client, prefix)
        session = f"s-{uuid.uuid4().hex}"
        ms = 1_700_000_000_000
        first = [(f"{ms}-1", TokenEvent(delta="a")), (f"{ms}-2", TokenEvent(delta="b"))]
        try:
            await stream.append([(session, first)], 60)
            await stream.append([(session, [*first, (f"{ms}-3", FINAL)])], 60)
            stored = await stream.read(session, None, block_ms=0)
            assert stored == [*first, (f"{ms}-3", FINAL)]
            assert not await stream.producing(session)
            assert is_final(stored[-1][1])
        finally:
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)


# --- the relay's retries (RelayedReplyStream._flush / _keep_trying) -----------------------------
async def test_s20n_the_relay_retries_a_later_blink_after_an_abandoned_failed_write(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Redis refuses while a reply ends; its publisher stops waiting (cancelled: a shutdown, a
    deadline of the caller's) and the log is dropped, so the failing write has nothing left to
    retry and the flusher stops, the failure clock still running. Redis comes back. Much later
    Redis blinks for 0.3 s during another reply: that write should be retried (for up to
    ``give_up_after_s``), but the stale clock says it has been failing for long: given up at
    once, its token never reaches Redis (readers in other processes miss it).

    The failures are timed by a clock this test moves (``failure_clock``): however long a
    write takes to fail on a slow machine, only the "much later" counts against the give-up."""
    prefix = f"s20n-{unique}:"
    clock = [1000.0]
    async with (
        Cuttable(*_host_port(stack_urls.redis_url)) as proxy,
        _redis(proxy.url(stack_urls.redis_url)) as through,
        _redis(stack_urls.redis_url) as direct,
    ):
        redis_stream = RedisReplyStream(through, prefix)
        relay = RelayedReplyStream(
            redis_stream, retry_every_s=0.1, give_up_after_s=2.5, failure_clock=lambda: clock[0]
        )
        first, second = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
        try:
            proxy.mode = "drop"
            proxy.cut()
            await relay.begin(first, 60)
            await relay.publish(first, TokenEvent(delta="x"), 60)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay.publish(first, FINAL, 60), 0.4)
            await asyncio.wait_for(relay.drain(), 15)
            proxy.mode = "pass"
            clock[0] += 3.0  # longer than give_up_after_s: all is well meanwhile

            await relay.begin(second, 60)
            proxy.mode = "drop"
            proxy.cut()
            await relay.publish(second, TokenEvent(delta="kept?"), 60)
            await asyncio.sleep(0.3)
            proxy.mode = "pass"
            await asyncio.wait_for(relay.publish(second, FINAL, 60), 5)
            stored = await RedisReplyStream(direct, prefix).read(second, None, block_ms=0)
        finally:
            proxy.mode = "pass"
            await relay.aclose()
            async for key in direct.scan_iter(match=f"{prefix}*"):
                await direct.delete(key)
        assert [e for _, e in stored] == [TokenEvent(delta="kept?"), FINAL]


async def test_s20n_the_relay_writes_a_reply_again_after_a_blink_in_order(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Guard: Redis refusing for 0.5 s mid-reply: every event reaches Redis, once, in order."""
    prefix = f"s20n-{unique}:"
    async with (
        Cuttable(*_host_port(stack_urls.redis_url)) as proxy,
        _redis(proxy.url(stack_urls.redis_url)) as through,
        _redis(stack_urls.redis_url) as direct,
    ):
        relay = RelayedReplyStream(
            RedisReplyStream(through, prefix), retry_every_s=0.1, give_up_after_s=5.0
        )
        session = f"s-{uuid.uuid4().hex}"
        tokens = [TokenEvent(delta=f"t{i}") for i in range(6)]
        try:
            await relay.begin(session, 60)
            await relay.publish(session, tokens[0], 60)
            await relay.publish(session, tokens[1], 60)
            await asyncio.sleep(0.2)
            blink = asyncio.ensure_future(_blink(proxy, 0.5))
            await asyncio.sleep(0.05)
            for token in tokens[2:]:
                await relay.publish(session, token, 60)
                await asyncio.sleep(0.1)
            await blink
            await asyncio.wait_for(relay.publish(session, FINAL, 60), 8)
            stored = await RedisReplyStream(direct, prefix).read(session, None, block_ms=0)
        finally:
            proxy.mode = "pass"
            await relay.aclose()
            async for key in direct.scan_iter(match=f"{prefix}*"):
                await direct.delete(key)
        assert [e for _, e in stored] == [*tokens, FINAL]
        ids = [i for i, _ in stored]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


# --- usage: a Claude attempt that began, then failed over to its fallback ----------------------
def _claude_began_then_overloaded() -> Reply:
    """Claude's message_start (the prompt counted), then an overloaded error: no text."""
    return Reply(chunks=[anthropic_stream()[0], anthropic_error_event("overloaded_error")])


async def test_s20n_v1_a_claude_attempt_that_began_then_fell_back_is_not_counted_as_aborted(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _world(stack_urls, unique, tmp_path) as w:
        w.anthropic.script(_claude_began_then_overloaded(), _claude_began_then_overloaded())
        w.openai.script(Reply(chunks=openai_usage_stream(prompt=30, completion=4)))
        before = await usage_of(w, w.claude), await usage_of(w, w.gpt)
        before_metrics = await counters(w, w.claude)
        answer = await w.client.post(
            "/v1/chat/completions", headers=w.v1,
            json={"model": w.claude, "messages": [{"role": "user", "content": question()}]},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Hello, world!"
        claude = delta(await usage_of(w, w.claude), before[0])
        gpt = delta(await usage_of(w, w.gpt), before[1])
        counted = (await counters(w, w.claude)).minus(before_metrics)
    assert (gpt["requests"], gpt["promptTokens"]) == (1, 30)
    assert counted.requests == {}, counted
    assert claude["requests"] == 0, claude


async def test_s20n_chat_a_claude_attempt_that_began_then_fell_back_is_counted_under_the_fallback(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Guard (the chat route, the same upstream answers): the fallback's reply only."""
    async with _world(stack_urls, unique, tmp_path) as w:
        w.anthropic.script(_claude_began_then_overloaded(), _claude_began_then_overloaded())
        w.openai.script(Reply(chunks=openai_usage_stream(prompt=30, completion=4)))
        before = await usage_of(w, w.claude), await usage_of(w, w.gpt)
        started = await w.chat.start(w.auth, model=w.claude, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
        assert events[-1][1] == "done", events[-1]
        claude = delta(await usage_of(w, w.claude), before[0])
        gpt = delta(await usage_of(w, w.gpt), before[1])
    assert (gpt["requests"], gpt["promptTokens"]) == (1, 30)
    assert claude["requests"] == 0, claude


# --- usage: absurd counts ignored "and estimated" -------------------------------------------------
async def test_s20n_an_absurd_prompt_count_is_estimated_not_charged_as_zero(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _world(stack_urls, unique, tmp_path) as w:
        w.openai.script(Reply(chunks=openai_usage_stream(prompt=10**20, completion=5)))
        before = await usage_of(w, w.gpt)
        started = await w.chat.start(w.auth, model=w.gpt, message=question() + " " + "x " * 200)
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
        used = delta(await usage_of(w, w.gpt), before)
    done = events[-1][2]
    assert events[-1][1] == "done", events[-1]
    assert done["usage"]["completionTokens"] == 5
    assert used["completionTokens"] == 5
    # the prompt (some 200 words) was sent and answered: it cannot have cost nothing
    assert done["usage"]["promptTokens"] > 0, done["usage"]
    assert used["promptTokens"] > 0, used


async def test_s20n_absurd_counts_alone_are_estimated_from_the_text(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Guard: both counts absurd: both estimated (the reply is charged something)."""
    async with _world(stack_urls, unique, tmp_path) as w:
        w.openai.script(Reply(chunks=openai_usage_stream(prompt=10**20, completion=10**15)))
        started = await w.chat.start(w.auth, model=w.gpt, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
    usage = events[-1][2]["usage"]
    assert events[-1][1] == "done", events[-1]
    assert 0 < usage["promptTokens"] < 10**9
    assert 0 < usage["completionTokens"] < 10**9


# --- the output cap (8 characters a token of the model's max_output_tokens) ---------------------
CAP_TOKENS = 50  # the test models' output cap: CAP_TOKENS * CHARS_PER_TOKEN characters


@asynccontextmanager
async def _capped_world(
    stack_urls: StackUrls, unique: str, tmp_path: Path, **env: str
) -> AsyncIterator[World]:
    """``test_s20_hunt_usage``'s world, its two models capped at ``CAP_TOKENS`` output tokens."""
    gpt, claude = f"openai/s20u-{unique}-gpt", f"anthropic/s20u-{unique}-claude"
    path = Path(_catalog(tmp_path, gpt, claude))
    shipped, extra = path.read_text().split(f'id = "{gpt}"', 1)
    extra = extra.replace("max_output_tokens = 16384", f"max_output_tokens = {CAP_TOKENS}")
    extra = extra.replace("max_output_tokens = 64000", f"max_output_tokens = {CAP_TOKENS}")
    path.write_text(f'{shipped}id = "{gpt}"{extra}')
    async with (
        FakeProviderServer(openai_default()) as openai_fake,
        FakeProviderServer(anthropic_default()) as anthropic_fake,
        _app(
            stack_urls, unique, openai_fake,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic_fake.url,
            WHALLI_CATALOG_PATH=str(path), WHALLI_CHAT_TITLES="off", **env,
        ) as chat,
    ):  # fmt: skip
        user = await chat.world.register("capped")
        created = await chat.client.post("/api/keys", json={"name": "s20n"}, headers=user["auth"])
        assert created.status_code == 201, created.text
        v1 = {"Authorization": f"Bearer {created.json()['secret']}"}
        yield World(
            chat, openai_fake, anthropic_fake, gpt, claude, user["auth"], v1, user["user"]["id"]
        )


RUNAWAY = ["0123456789"] * 200  # 2,000 characters: past the cap


async def test_s20n_a_claude_reply_cut_at_the_output_cap_is_charged_the_text_it_wrote(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _capped_world(stack_urls, unique, tmp_path) as w:
        w.anthropic.script(Reply(chunks=anthropic_stream(RUNAWAY, output_tokens=9999)))
        before = await usage_of(w, w.claude)
        started = await w.chat.start(w.auth, model=w.claude, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
        used = delta(await usage_of(w, w.claude), before)
    done = events[-1][2]
    shown = "".join(data["delta"] for _, name, data in events if name == "token")
    assert events[-1][1] == "done", events[-1]
    assert 0 < len(shown) <= CAP_TOKENS * CHARS_PER_TOKEN
    assert done["finishReason"] == "max_tokens"
    assert done["usage"]["completionTokens"] >= estimate_tokens(shown), done["usage"]
    assert used["completionTokens"] >= estimate_tokens(shown), used


async def test_s20n_an_openai_reply_cut_at_the_output_cap_is_charged_the_text_it_wrote(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Guard (the OpenAI adapter, the same runaway): cut with ``length``, charged an estimate."""
    async with _capped_world(stack_urls, unique, tmp_path) as w:
        w.openai.script(Reply(chunks=openai_stream(RUNAWAY, usage=(11, 9999))))
        started = await w.chat.start(w.auth, model=w.gpt, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
    done = events[-1][2]
    shown = "".join(data["delta"] for _, name, data in events if name == "token")
    assert events[-1][1] == "done", events[-1]
    assert 0 < len(shown) <= CAP_TOKENS * CHARS_PER_TOKEN
    assert done["finishReason"] == "length"
    assert done["usage"]["completionTokens"] >= estimate_tokens(shown), done["usage"]


async def test_s20n_a_reply_finished_within_its_token_cap_is_not_cut_by_the_character_cap(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Indented code (a run of spaces is one token, or a few, to the BPE tokenizers): 12 lines
    of 64 spaces and a statement, 36 tokens by the provider's count (under the cap of 50),
    828 characters (over 8 a token, which the cap first assumed and so cut it at 400). The
    provider finished with ``stop``: the reply is whole."""
    lines = [" " * 64 + "x = 1\n"] * 12
    async with _capped_world(stack_urls, unique, tmp_path) as w:
        w.openai.script(Reply(chunks=openai_stream(lines, usage=(11, 36))))
        started = await w.chat.start(w.auth, model=w.gpt, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
    done = events[-1][2]
    shown = "".join(data["delta"] for _, name, data in events if name == "token")
    assert events[-1][1] == "done", events[-1]
    assert (done["finishReason"], shown) == ("stop", "".join(lines))


# --- Claude's 1-hour prompt cache -----------------------------------------------------------------
async def test_s20n_with_the_1h_cache_breakpoints_ask_an_hour_and_its_writes_cost_twice_the_input(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Guard: WHALLI_ANTHROPIC_PROMPT_CACHE_TTL=1h: every breakpoint says ``ttl: 1h``; the
    writes Anthropic reports as hour-long are priced at twice the input, the 5-minute ones at
    1.25 times, alike in the done event, the stored reply and /api/usage."""
    async with _world(stack_urls, unique, tmp_path, WHALLI_ANTHROPIC_PROMPT_CACHE_TTL="1h") as w:
        start = {
            "input_tokens": 100, "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 0, "output_tokens": 1,
            "cache_creation": {"ephemeral_1h_input_tokens": 600, "ephemeral_5m_input_tokens": 400},
        }  # fmt: skip
        w.anthropic.script(
            Reply(chunks=with_usage(anthropic_stream(), start, {"output_tokens": 10}))
        )
        before = await usage_of(w, w.claude)
        started = await w.chat.start(
            w.auth, model=w.claude, message=question(), systemPrompt="Be brief."
        )
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
        used = delta(await usage_of(w, w.claude), before)
        stored = (await w.client.get(f"/api/chats/{started['chatId']}", headers=w.auth)).json()[
            "messages"
        ][-1]
        body = w.anthropic.requests[-1].body
    marks = [
        block["cache_control"]
        for part in [*body.get("system", []), *(m for m in body["messages"])]
        for block in (part.get("content") if isinstance(part.get("content"), list) else [part])
        if isinstance(block, dict) and "cache_control" in block
    ]
    assert marks, body
    assert all(mark == {"type": "ephemeral", "ttl": "1h"} for mark in marks), marks
    expected = (100 * 3.0 + 600 * 6.0 + 400 * 3.75 + 10 * 15.0) / 1e6
    done = events[-1][2]
    assert events[-1][1] == "done", events[-1]
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert stored["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert used["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert (done["usage"]["promptTokens"], done["usage"]["cacheWriteTokens"]) == (1100, 1000)


# --- a provider stream cut after its end was said -------------------------------------------------
async def test_s20n_v1_tool_calls_cut_after_their_usage_chunk_are_complete_tool_calls(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Guard: OpenAI's tool-call answer, its connection dropped after the usage chunk (no
    [DONE]): every call and its whole arguments, ``tool_calls``, and the reported usage."""
    call = ScriptedCall("call_1", "get_weather", ['{"city"', ': "Paris"}'])
    pieces = openai_tool_stream([call], usage=(40, 7))[:-1]  # no [DONE]
    async with _world(stack_urls, unique, tmp_path) as w:
        w.openai.script(Reply(chunks=pieces, abort=True))
        before = await usage_of(w, w.gpt)
        answer = await w.client.post(
            "/v1/chat/completions", headers=w.v1,
            json={"model": w.gpt, "tools": TOOLS,
                  "messages": [{"role": "user", "content": question()}]},
        )  # fmt: skip
        used = delta(await usage_of(w, w.gpt), before)
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_weather", '{"city": "Paris"}')
    ]
    assert answer.json()["usage"]["prompt_tokens"] == 40
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (1, 40, 7)


async def test_s20n_an_openai_stream_cut_after_its_finish_but_before_any_usage_fails(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Guard: usage asked for and not come: a cut there may have lost the usage chunk (and,
    for all Whalli knows, more): the reply is failed, keeping its text, not passed as whole."""
    pieces = openai_stream(["one", " two"], usage=None, done=False)
    async with _world(stack_urls, unique, tmp_path) as w:
        w.openai.script(Reply(chunks=pieces, abort=True), Reply(chunks=pieces, abort=True))
        started = await w.chat.start(w.auth, model=w.gpt, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
    assert events[-1][1] == "error", events[-1]
    assert "".join(d["delta"] for _, name, d in events if name == "token") == "one two"


async def test_s20n_reasoning_tokens_never_exceed_the_completion_tokens_they_are_part_of(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _world(stack_urls, unique, tmp_path) as w:
        w.openai.script(
            Reply(chunks=openai_usage_stream(prompt=10, completion=5, reasoning=5_000_000))
        )
        before = await usage_of(w, w.gpt)
        started = await w.chat.start(w.auth, model=w.gpt, message=question())
        events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
        used = delta(await usage_of(w, w.gpt), before)
    usage = events[-1][2]["usage"]
    assert events[-1][1] == "done", events[-1]
    assert usage["reasoningTokens"] <= usage["completionTokens"], usage
    assert used["reasoningTokens"] <= used["completionTokens"], used


async def test_s20n_a_stalled_postgres_holds_a_request_no_longer_than_the_acquire_timeout(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """``create_pool``: "``acquire_timeout`` bounds how long a caller waits for a connection".
    With Postgres stalled, the idle connection's checkout ping waits for ``io_timeout`` (here
    8 s; 30 s by default, three times the default acquire timeout) before the pool's own
    deadline (1 s) is looked at again."""
    env = {"WHALLI_DATABASE_IO_TIMEOUT_S": "8", "WHALLI_DATABASE_ACQUIRE_TIMEOUT_S": "1"}
    async with proxied(stack_urls, unique, pg=True, **env) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        await asyncio.sleep(1.5)  # the pool's connection idles: its next checkout pings it
        loop = asyncio.get_running_loop()
        pg.freeze()
        began = loop.time()
        try:
            async with asyncio.timeout(15):
                response = await chat.client.get("/api/chats", headers=alice["auth"])
        finally:
            waited = loop.time() - began
            pg.thaw()
        _is_problem(response, 503)
    assert waited < 5.0, f"held {waited:.1f} s by a 1 s acquire timeout"
