"""Races and robustness of the chat flow, as users of a chat platform meet them: the real app,
Postgres and Redis, and a fake provider on loopback.

Where two requests must meet at one point of their transactions, the test holds a Postgres lock
from a connection of its own (``blocking``): a request waits on it at a known statement, the
other request runs meanwhile, then the lock is let go. No sleeps decide an outcome: waits poll
for a condition (a request waiting on the lock, the generations ended).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.integration.http.test_chat_attach_elsewhere import held_reply, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    openai_chunk,
    openai_default,
    sse,
)
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.domain.model.chats import MessageRole, MessageStatus
from whalli.entrypoints.http.asgi import build_app
from whalli.entrypoints.http.generation import GenerationSupervisor
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY

MODEL = "openai/gpt-4o-mini"
ECHO = "dev/echo"  # answers the last user message word by word: a reply names its question
Events = list[tuple[str | None, str, dict[str, Any]]]


class RaceChat(Chat):
    def __init__(
        self, world: World, provider: FakeProviderServer, generations: GenerationSupervisor,
        database_url: str,
    ) -> None:  # fmt: skip
        super().__init__(world, provider)
        self.generations, self.database_url = generations, database_url


@asynccontextmanager
async def _race_app(
    stack_urls: StackUrls, unique: str, provider: FakeProviderServer, **env: str
) -> AsyncIterator[RaceChat]:
    settings = _settings(
        stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url,
        WHALLI_PROVIDER_MAX_ATTEMPTS="2", **env,
    )  # fmt: skip
    container = build_container(settings)
    app = build_app(settings, container)
    generations = app.state[CONTAINER_STATE_KEY].generations
    async with live_server(app) as client:
        world = World(client, container)  # type: ignore[arg-type]
        yield RaceChat(world, provider, generations, stack_urls.database_url)


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[RaceChat]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider) as chat,
    ):
        yield chat


# --- helpers -------------------------------------------------------------------------------------
def _text(events: Events) -> str:
    return "".join(data["delta"] for _, name, data in events if name == "token")


async def stored(chat: Chat, chat_id: str) -> list[Any]:
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        return list(await uow.chats.list_messages(uuid.UUID(chat_id)))


async def usage(chat: Chat, user: dict[str, Any], since: datetime) -> Any:
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        return await uow.usage.totals(uuid.UUID(user["user"]["id"]), since=since)


async def settled(chat: RaceChat) -> None:
    """Until every reply generation of the app ended (they run in the background)."""
    for _ in range(1000):
        if chat.generations.running == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("a reply generation never ended")


async def start(chat: Chat, auth: dict[str, str], **body: Any) -> Any:
    return await chat.client.post("/api/chat/start", json=body, headers=auth)


async def stop(chat: Chat, session_id: str, auth: dict[str, str]) -> Any:
    return await chat.client.post(f"/api/chat/sessions/{session_id}/stop", headers=auth)


async def regenerate(chat: Chat, auth: dict[str, str], **body: Any) -> Any:
    return await chat.client.post("/api/chat/regenerate", json=body, headers=auth)


async def delete(chat: Chat, chat_id: str, auth: dict[str, str]) -> Any:
    return await chat.client.delete(f"/api/chats/{chat_id}", headers=auth)


async def read_chat(chat: Chat, chat_id: str, auth: dict[str, str]) -> Any:
    return await chat.client.get(f"/api/chats/{chat_id}", headers=auth)


async def answered(chat: Chat, auth: dict[str, str], message: str) -> dict[str, Any]:
    """A chat with one exchange, its reply finished (echoed)."""
    started = await chat.start(auth, model=ECHO, message=message)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events
    return started


def pairs(messages: list[Any]) -> list[tuple[str, str]]:
    return [(str(m.role), m.content) for m in messages]


Blocked = Callable[[str | tuple[str, ...]], Awaitable[None]]


@asynccontextmanager
async def blocking(database_url: str, *statement: tuple[str, Any]) -> AsyncIterator[Blocked]:
    """Run ``statement`` in a transaction held open for the block (its locks with it); yields
    ``until_waiting(prefix)``: returns once a request's statement starting with ``prefix``
    waits on a lock. The transaction is rolled back as the block ends."""
    holder = await psycopg.AsyncConnection.connect(database_url)
    watcher = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        for query, params in statement:
            await holder.execute(query, params)

        async def until_waiting(prefix: str | tuple[str, ...]) -> None:
            for _ in range(1000):
                cursor = await watcher.execute(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0"
                )
                if any(query.lstrip().startswith(prefix) for (query,) in await cursor.fetchall()):
                    return
                await asyncio.sleep(0.005)
            raise AssertionError(f"no statement {prefix!r} ever waited on the lock")

        yield until_waiting
    finally:
        await holder.rollback()
        await holder.close()
        await watcher.close()


async def until_done(task: asyncio.Task[Any]) -> Any:
    return await asyncio.wait_for(task, timeout=30)


async def until_waiting_or_done(
    until_waiting: Blocked, task: asyncio.Task[Any], prefix: str | tuple[str, ...]
) -> None:
    """Once ``task``'s request waits on a lock at a statement starting with ``prefix``, or ended
    (when nothing it does waits on the lock held)."""
    waiting = asyncio.create_task(until_waiting(prefix))
    await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()


# --- deleting a chat -----------------------------------------------------------------------------
async def test_a_chat_deleted_while_its_reply_streams_ends_it_once_and_refuses_the_rest(
    chat: RaceChat,
) -> None:
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"doomed {uuid.uuid4()}")
    first = await chat.events(started["sessionId"], limit=1)

    deleted = await delete(chat, started["chatId"], alice["auth"])
    stopped = await stop(chat, started["sessionId"], alice["auth"])  # harmless, as documented
    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    into = await start(chat, alice["auth"], model=MODEL, message="more", chatId=started["chatId"])
    gate.set()
    rest = await chat.events(started["sessionId"], last_event_id=first[-1][0])
    await settled(chat)

    assert deleted.status_code == 204, deleted.text
    assert stopped.status_code == 202, stopped.text
    assert (again.status_code, again.json()["code"]) == (404, "chat_not_found")
    assert (into.status_code, into.json()["code"]) == (404, "chat_not_found")
    # the reply ends; its readers are not left waiting
    assert (rest[-1][1], rest[-1][2]["code"]) == ("error", "chat_deleted")
    assert (await read_chat(chat, started["chatId"], alice["auth"])).status_code == 404
    assert await stored(chat, started["chatId"]) == []
    spent = await usage(chat, alice, before)
    assert spent.requests == 1  # the tokens still count, once
    # a reader coming back afterwards gets the same end, and then is told to stop
    assert await chat.events(started["sessionId"]) == [*first, *rest]
    done = await chat.client.get(
        f"/api/chat/stream?sessionId={started['sessionId']}",
        headers={"Last-Event-ID": str(rest[-1][0])},
    )
    assert done.status_code == 204


async def test_a_chat_deleted_while_a_regenerated_reply_streams_keeps_both_replies_usage(
    chat: RaceChat,
) -> None:
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    started = await chat.start(alice["auth"], model=MODEL, message=f"one {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    gate = held_reply(chat)
    regenerated = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    assert regenerated.status_code == 201, regenerated.text
    session_id = regenerated.json()["sessionId"]
    first = await chat.events(session_id, limit=1)

    deleted = await delete(chat, started["chatId"], alice["auth"])
    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    gate.set()
    rest = await chat.events(session_id, last_event_id=first[-1][0])
    await settled(chat)

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert (rest[-1][1], rest[-1][2]["code"]) == ("error", "chat_deleted")
    assert (await usage(chat, alice, before)).requests == 2  # the replaced reply, and this one


async def test_a_regeneration_and_the_chats_deletion_at_the_same_time_do_not_deadlock(
    chat: RaceChat,
) -> None:
    """The regeneration deleted the old reply, then (message edited) updated the question and
    inserted the new reply, whose foreign key locks the chat; the deletion locks the chat, then
    deletes its messages. Met in the middle, each waited for the other: Postgres killed one,
    and its request answered 503 "The database is unavailable". Now the regeneration locks
    the chat first, so the deletion waits for it."""
    alice = await chat.world.register("alice")
    started = await answered(chat, alice["auth"], f"race {uuid.uuid4()}")
    question = uuid.UUID(started["messageId"])
    lock = ("SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (question,))

    async with blocking(chat.database_url, lock) as until_waiting:
        regenerating = asyncio.create_task(
            regenerate(chat, alice["auth"], chatId=started["chatId"], message="edited")
        )
        await until_waiting("UPDATE messages")  # the old reply is deleted already
        deleting = asyncio.create_task(delete(chat, started["chatId"], alice["auth"]))
        await until_waiting("DELETE FROM chats")  # the chat is locked by its deletion
    regenerated, deleted = await until_done(regenerating), await until_done(deleting)
    await settled(chat)

    assert regenerated.status_code in (201, 404), regenerated.text
    assert deleted.status_code == 204, deleted.text
    assert (await read_chat(chat, started["chatId"], alice["auth"])).status_code == 404


async def test_a_regeneration_racing_the_chats_deletion_is_not_found_not_in_progress(
    chat: RaceChat,
) -> None:
    """Both at once, a few times (they interleave differently each time): the chat is gone, so
    a regeneration that loses is 404 ``chat_not_found``, never 409 ``reply_in_progress`` (which
    tells the user to wait for a reply that does not exist), and nobody gets a 5xx."""
    alice = await chat.world.register("alice")
    for round_ in range(6):
        started = await answered(chat, alice["auth"], f"race {round_} {uuid.uuid4()}")
        regenerated, deleted = await asyncio.gather(
            regenerate(chat, alice["auth"], chatId=started["chatId"]),
            delete(chat, started["chatId"], alice["auth"]),
        )
        await settled(chat)
        assert deleted.status_code == 204, (round_, deleted.text)
        assert regenerated.status_code in (201, 404), (round_, regenerated.text)
        if regenerated.status_code == 201:  # it won: its reply ends, saved or not
            events = await chat.events(regenerated.json()["sessionId"])
            end = (events[-1][1], events[-1][2].get("code"))
            assert end in (("done", None), ("error", "chat_deleted")), events


# --- stopping ------------------------------------------------------------------------------------
async def test_two_stops_before_the_first_token_abort_the_reply_once(chat: RaceChat) -> None:
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    gate = asyncio.Event()  # never set: the provider sends nothing but its headers
    chat.provider.script(Reply(chunks=openai_pieces(["never"]), gate=gate, gate_after=0))
    started = await chat.start(alice["auth"], model=MODEL, message=f"quick {uuid.uuid4()}")

    stops = await asyncio.gather(*(stop(chat, started["sessionId"], alice["auth"]) for _ in "ab"))
    events = await chat.events(started["sessionId"])
    await settled(chat)

    assert [s.status_code for s in stops] == [202, 202]
    assert [(name, data["status"]) for _, name, data in events] == [("done", "aborted")]
    reply = (await stored(chat, started["chatId"]))[-1]
    assert (reply.status, reply.content) == (MessageStatus.ABORTED, "")
    assert (await usage(chat, alice, before)).requests == 1
    await asyncio.wait_for(chat.provider.disconnected.wait(), timeout=5)
    assert not gate.is_set()


async def test_a_stop_after_the_reply_finished_changes_nothing(chat: RaceChat) -> None:
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    started = await chat.start(alice["auth"], model=MODEL, message=f"finished {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])

    late = await stop(chat, started["sessionId"], alice["auth"])
    await settled(chat)

    assert late.status_code == 202
    reply = (await stored(chat, started["chatId"]))[-1]
    assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "Hello, world!")
    assert await chat.events(started["sessionId"]) == events
    assert (await usage(chat, alice, before)).requests == 1


async def test_a_regeneration_right_after_a_stop_waits_for_the_aborted_reply_then_replaces_it(
    chat: RaceChat,
) -> None:
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    held_reply(chat)  # never let go: only the stop ends it
    started = await chat.start(alice["auth"], model=MODEL, message=f"stop me {uuid.uuid4()}")
    first = await chat.events(started["sessionId"], limit=1)

    stopped = await stop(chat, started["sessionId"], alice["auth"])
    refused = await regenerate(chat, alice["auth"], chatId=started["chatId"])  # being saved
    rest = await chat.events(started["sessionId"], last_event_id=first[-1][0])
    await settled(chat)
    too_dear = await regenerate(
        chat, alice["auth"], chatId=started["chatId"], model="openai/gpt-4o"
    )
    kept = pairs(await stored(chat, started["chatId"]))
    regenerated = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    events = await chat.events(regenerated.json()["sessionId"])

    assert stopped.status_code == 202
    assert (refused.status_code, refused.json()["code"]) == (409, "reply_in_progress")
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "aborted")
    assert (too_dear.status_code, too_dear.json()["code"]) == (403, "model_not_in_plan")
    assert kept[-1] == ("assistant", "first")  # the refusal changed nothing
    assert regenerated.status_code == 201, regenerated.text
    assert regenerated.json()["replacedMessageId"] == rest[-1][2]["messageId"]
    assert _text(events) == "Hello, world!"
    assert [(m.role, m.status) for m in await stored(chat, started["chatId"])] == [
        (MessageRole.USER, MessageStatus.COMPLETE),
        (MessageRole.ASSISTANT, MessageStatus.COMPLETE),
    ]
    assert (await usage(chat, alice, before)).requests == 2


# --- concurrent writers of one chat ---------------------------------------------------------------
async def test_two_messages_sent_into_one_chat_at_once_are_both_answered_in_pairs(
    chat: RaceChat,
) -> None:
    alice = await chat.world.register("alice")
    started = await answered(chat, alice["auth"], "zero")
    for round_ in range(3):
        both = await asyncio.gather(
            *(
                start(chat, alice["auth"], model=ECHO, message=f"{who}{round_}",
                      chatId=started["chatId"])
                for who in "ab"
            )
        )  # fmt: skip
        assert [r.status_code for r in both] == [201, 201], [r.text for r in both]
        for response in both:
            events = await chat.events(response.json()["sessionId"])
            assert events[-1][1] == "done"
    await settled(chat)
    messages = pairs(await stored(chat, started["chatId"]))
    assert len(messages) == 14
    for question, reply in zip(messages[::2], messages[1::2], strict=True):
        assert (question[0], reply) == ("user", ("assistant", question[1])), messages


async def test_a_regeneration_racing_a_new_message_keeps_each_reply_after_its_question(
    chat: RaceChat,
) -> None:
    """Another tab sends a message while this one asks for the last reply again: both read
    the chat ending with the reply and both wrote, so the new reply to the first question
    landed after the second exchange. Now both lock the chat before reading it: they run one
    after the other."""
    alice = await chat.world.register("alice")
    started = await answered(chat, alice["auth"], "first question")
    lock = ("LOCK TABLE messages IN EXCLUSIVE MODE", None)  # reads go on, writes wait

    async with blocking(chat.database_url, lock) as until_waiting:
        sending = asyncio.create_task(
            start(chat, alice["auth"], model=ECHO, message="second question",
                  chatId=started["chatId"])
        )  # fmt: skip
        await until_waiting("WITH new")  # it read the chat; its insert waits
        regenerating = asyncio.create_task(
            regenerate(chat, alice["auth"], chatId=started["chatId"])
        )
        # it waits for the chat the start locked, or (without that lock) it read the chat too
        # and its delete waits for the table
        await until_waiting_or_done(until_waiting, regenerating, ("SELECT", "DELETE FROM messages"))
    sent, regenerated = await until_done(sending), await until_done(regenerating)
    await settled(chat)

    assert sent.status_code == 201, sent.text
    assert regenerated.status_code in (201, 409), regenerated.text
    messages = pairs(await stored(chat, started["chatId"]))
    assert messages == [
        ("user", "first question"), ("assistant", "first question"),
        ("user", "second question"), ("assistant", "second question"),
    ]  # fmt: skip
    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    assert again.status_code == 201, again.text  # the chat still ends with a proper exchange


async def test_a_rename_while_a_message_is_being_sent_is_kept(chat: RaceChat) -> None:
    """Sending a message into a chat saved the chat's row as the start read it (to bump
    ``updated_at``): a rename committed meanwhile was overwritten with the old title. Now the
    start locks the chat (the rename waits) and bumps ``updated_at`` alone."""
    alice = await chat.world.register("alice")
    started = await answered(chat, alice["auth"], "old title")
    lock = ("LOCK TABLE messages IN EXCLUSIVE MODE", None)

    async with blocking(chat.database_url, lock) as until_waiting:
        sending = asyncio.create_task(
            start(chat, alice["auth"], model=ECHO, message="more", chatId=started["chatId"])
        )
        await until_waiting("WITH new")
        renaming = asyncio.create_task(
            chat.client.patch(
                f"/api/chats/{started['chatId']}", json={"title": "New title"},
                headers=alice["auth"],
            )
        )  # fmt: skip
        # it waits for the chat the start locked (or, without that lock, it is done at once)
        await until_waiting_or_done(until_waiting, renaming, "UPDATE chats")
    renamed, sent = await until_done(renaming), await until_done(sending)
    await settled(chat)

    assert renamed.status_code == 200, renamed.text
    assert sent.status_code == 201, sent.text
    found = await read_chat(chat, started["chatId"], alice["auth"])
    assert found.json()["title"] == "New title"


async def test_renaming_and_reading_a_chat_while_its_reply_streams(chat: RaceChat) -> None:
    alice = await chat.world.register("alice")
    gate = held_reply(chat)
    started = await chat.start(alice["auth"], model=MODEL, message=f"rename {uuid.uuid4()}")
    first = await chat.events(started["sessionId"], limit=1)

    renamed = await chat.client.patch(
        f"/api/chats/{started['chatId']}", json={"title": "  New   name "}, headers=alice["auth"]
    )
    during = await read_chat(chat, started["chatId"], alice["auth"])
    listed = await chat.client.get("/api/chats", headers=alice["auth"])
    gate.set()
    rest = await chat.events(started["sessionId"], last_event_id=first[-1][0])
    await settled(chat)
    after = await read_chat(chat, started["chatId"], alice["auth"])

    assert renamed.status_code == 200, renamed.text
    assert during.json()["title"] == "New name"
    statuses = [m["status"] for m in during.json()["messages"]]
    assert statuses in (["complete", "pending"], ["complete", "streaming"])
    assert during.json()["messages"][-1]["sessionId"]
    assert [c["title"] for c in listed.json()["items"]] == ["New name"]
    assert rest[-1][1] == "done"
    assert after.json()["title"] == "New name"
    assert [(m["status"], m["content"]) for m in after.json()["messages"]][-1] == (
        "complete",
        "first rest",
    )


# --- readers -------------------------------------------------------------------------------------
async def test_a_member_removed_while_streaming_by_their_pass_cannot_attach_again(
    chat: RaceChat,
) -> None:
    """Access is checked at every attach (as documented): the stream already open goes on to
    its end, a reconnection (the EventSource way, with Last-Event-ID) is refused."""
    alice, carol = await chat.world.register("alice"), await chat.world.register("carol")
    project_id, carol_id = await team_project(chat, alice, carol, "editor")
    gate = held_reply(chat)
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"team {uuid.uuid4()}", projectId=project_id
    )
    carols_pass = (await read_chat(chat, started["chatId"], carol["auth"])).json()["messages"][-1][
        "sessionId"
    ]
    url = f"/api/chat/stream?sessionId={carols_pass}"

    names: list[str] = []
    ids: list[str] = []
    async with chat.client.stream("GET", url) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("id: "):
                ids.append(line.removeprefix("id: "))
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
            if line.startswith("data: ") and names[-1] == "token":
                break
        removed = await chat.client.delete(
            f"/api/projects/{project_id}/members/{carol_id}", headers=alice["auth"]
        )
        assert removed.status_code == 204
        gate.set()
        async for line in lines:
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if names[-1] in ("done", "error"):
                    break

    again = await chat.client.get(url, headers={"Last-Event-ID": ids[0]})
    stopped = await stop(chat, carols_pass, carol["auth"])
    await settled(chat)

    assert names == ["token", "token", "done"]
    assert (again.status_code, again.json()["code"]) == (404, "chat_session_not_found")
    assert stopped.status_code == 404
    assert (await stored(chat, started["chatId"]))[-1].status is MessageStatus.COMPLETE


async def test_a_client_reconnecting_many_times_quickly_misses_nothing_and_leaves_no_reader(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """With abandoned replies stopped (readers counted in Redis), a client that keeps dropping
    its stream and coming back with Last-Event-ID gets every event once, and once it is gone no
    reader is counted. A client leaving while its stream still counted it in (``reader_joined``)
    cancelled that call after Redis applied its INCR, and nothing took it back: each such drop
    counted a reader for an hour, so the abandoned reply was never stopped. Now the join runs
    to its end and is always taken back."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="60") as chat,
    ):
        alice = await chat.world.register("alice")
        words = [f" w{i}" for i in range(20)]
        gate = asyncio.Event()  # the provider sends the first token, then waits for it
        provider.script(Reply(chunks=openai_pieces(words), gate=gate, gate_after=2))
        started = await chat.start(alice["auth"], model=MODEL, message=f"many {uuid.uuid4()}")
        session_id = started["sessionId"]
        url = f"/api/chat/stream?sessionId={session_id}"
        seen = await chat.events(session_id, limit=1)

        async def drop() -> None:  # as soon as the stream answered
            resume = {"Last-Event-ID": str(seen[0][0])}
            async with chat.client.stream("GET", url, headers=resume) as response:
                assert response.status_code == 200

        for _ in range(40):
            await drop()
            await asyncio.sleep(0.05)  # (pace: each drop meets the server in a new state)
        gate.set()
        for _ in range(40):  # drop after each event, resume after it
            seen += await chat.events(session_id, last_event_id=seen[-1][0], limit=1)
            if seen[-1][1] in ("done", "error"):
                break
        await settled(chat)
        stream = await resolved(chat.world.container.adapters.reply_stream())
        readers = (await stream.readers_of([session_id]))[session_id]
        for _ in range(100):  # a dropped stream's bookkeeping ends just after the drop
            if readers == 0:
                break
            await asyncio.sleep(0.01)
            readers = (await stream.readers_of([session_id]))[session_id]

        assert _text(seen) == "".join(words)
        assert seen[-1][1] == "done"
        assert await chat.events(session_id) == seen  # nothing lost, nothing repeated
        assert readers == 0


# --- the provider failing ------------------------------------------------------------------------
async def test_a_regeneration_the_provider_fails_leaves_a_failed_reply_that_can_be_retried(
    chat: RaceChat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model=MODEL, message=f"fail {uuid.uuid4()}")
    await chat.events(started["sessionId"])
    server_error = {"error": {"message": "boom", "type": "server_error", "code": None}}
    chat.provider.script(*[Reply(status=500, body=server_error)] * 2)  # both attempts

    failed = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    events = await chat.events(failed.json()["sessionId"])
    await settled(chat)
    after_500 = (await stored(chat, started["chatId"]))[-1]
    cut = openai_pieces(["half"], usage=None, done=False)[:2]
    chat.provider.script(Reply(chunks=cut, abort=True))
    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
    cut_events = await chat.events(again.json()["sessionId"])
    await settled(chat)
    shown = (await read_chat(chat, started["chatId"], alice["auth"])).json()["messages"]

    assert failed.status_code == 201
    assert [name for _, name, _ in events] == ["error"]
    assert events[-1][2]["messageId"] == str(after_500.id)
    assert (after_500.status, after_500.content) == (MessageStatus.FAILED, "")
    assert "HTTP 500" in str(after_500.error)
    assert again.status_code == 201, again.text  # a failed reply can be asked again
    assert (_text(cut_events), cut_events[-1][1]) == ("half", "error")
    assert [(m["role"], m["status"], m["content"]) for m in shown][-1] == (
        "assistant",
        "failed",
        "half",
    )
    assert len(shown) == 2
    assert shown[-1]["sessionId"] is None


async def test_a_malformed_provider_chunk_is_skipped_and_the_reply_ends(chat: RaceChat) -> None:
    """A chunk whose ``delta`` is not an object made the OpenAI adapter raise AttributeError
    (not a ProviderError): readers got ``internal_error`` and the message stayed ``pending``
    until the sweeper, so the chat showed a live session for a dead reply and every
    regeneration answered 409. A field of an unexpected type now counts as missing."""
    alice = await chat.world.register("alice")
    started = await answered(chat, alice["auth"], "fine so far")
    role, *rest = openai_pieces(["never"])
    odd = sse(openai_chunk({}) | {"choices": [{"index": 0, "delta": "oops"}]})
    chat.provider.script(Reply(chunks=[role, odd, *rest]))

    regenerated = await regenerate(chat, alice["auth"], chatId=started["chatId"], model=MODEL)
    events = await chat.events(regenerated.json()["sessionId"])
    await settled(chat)
    reply = (await stored(chat, started["chatId"]))[-1]
    shown = (await read_chat(chat, started["chatId"], alice["auth"])).json()["messages"][-1]
    again = await regenerate(chat, alice["auth"], chatId=started["chatId"])

    assert (events[-1][1], events[-1][2]["status"]) == ("done", "complete"), events
    assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "never")
    assert shown["sessionId"] is None
    assert again.status_code == 201, again.text
