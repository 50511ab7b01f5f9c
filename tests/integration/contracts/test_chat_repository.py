"""Contract of ChatRepository (chats and messages), in memory and on Postgres."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whalli.domain.model.chats import Chat, Message, MessageStatus, TokenUsage
from whalli.domain.model.errors import (
    ChatNotFound,
    Conflict,
    InvalidInput,
    MessageNotFound,
    ProjectNotFound,
)
from whalli.ports.usage import UsageRecord

from ..conftest import UowFactory
from ..entities import a_chat, a_message, a_project, at, committed_world
from .strategies import messages

examples = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


async def test_a_chat_reads_back_equal_and_can_be_renamed(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        assert await uow.chats.get(world.chat.id) == world.chat
        world.chat.rename("  A   better   title ", at(5))
        await uow.chats.update(world.chat)
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.chats.get(world.chat.id)).title == "A better title"


async def test_a_chats_system_prompt_reads_back_set_changed_and_removed(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    chat = Chat.start(
        id=uuid.uuid4(), project_id=world.project.id, user_id=world.user.id,
        first_message="hi", now=at(1), system_prompt="Be brief. \u00e9\U0001f40b\n\nTwo lines.",
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.chats.add(chat)
        await uow.commit()
    for change in ("x" * 20_000, None):
        async with uow_factory() as uow:
            assert await uow.chats.get(chat.id) == chat
            chat.instruct(change, at(2))
            await uow.chats.update(chat)
            await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.chats.lock(chat.id)) == chat
        assert chat.system_prompt is None


async def test_an_unknown_chat_is_not_found(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_chat(world.project, world.user)
    async with uow_factory() as uow:
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.get(ghost.id)
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.update(ghost)
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.delete(ghost.id)


async def test_a_chat_needs_an_existing_project(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        with pytest.raises(ProjectNotFound, match="Project not found"):
            await uow.chats.add(a_chat(a_project(world.user), world.user))


async def test_deleting_a_chat_deletes_its_messages(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.chats.delete(world.chat.id)
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(MessageNotFound, match="Message not found"):
            await uow.chats.get_message(message.id)
        assert await uow.chats.list_messages(world.chat.id) == []


async def test_chats_are_listed_newest_first_by_update_then_id(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    chats = [a_chat(world.project, world.user, now=at(s)) for s in (10, 30, 20, 20, 20)]
    async with uow_factory() as uow:
        await uow.chats.delete(world.chat.id)
        for chat in chats:
            await uow.chats.add(chat)
        await uow.commit()

    expected = sorted(chats, key=lambda c: (c.updated_at, c.id), reverse=True)
    async with uow_factory() as uow:
        assert await uow.chats.list_for_project(world.project.id, limit=10) == expected
        assert await uow.chats.list_for_project(world.project.id, limit=2) == expected[:2]


async def test_the_cursor_walks_every_chat_once(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    chats = [a_chat(world.project, world.user, now=at(s % 3)) for s in range(7)]
    async with uow_factory() as uow:
        for chat in chats:
            await uow.chats.add(chat)
        await uow.commit()

    seen: list[uuid.UUID] = []
    async with uow_factory() as uow:
        page = await uow.chats.list_for_project(world.project.id, limit=3)
        while page:
            seen += [c.id for c in page]
            last = page[-1]
            page = await uow.chats.list_for_project(
                world.project.id, limit=3, before=(last.updated_at, last.id)
            )

    everything = sorted([*chats, world.chat], key=lambda c: (c.updated_at, c.id), reverse=True)
    assert seen == [c.id for c in everything]


async def test_pin_and_archive_times_read_back_and_leave_the_update_time(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        chat = await uow.chats.lock(world.chat.id)
        chat.pin(True, at(7))
        await uow.chats.update(chat)
        await uow.commit()
    async with uow_factory() as uow:
        found = await uow.chats.get(world.chat.id)
        assert found == chat
        assert (found.pinned_at, found.archived_at, found.updated_at) == (
            at(7), None, world.chat.updated_at,
        )  # fmt: skip
        found.archive(True, at(8))
        await uow.chats.update(found)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.get(world.chat.id) == found
        assert (found.pinned_at, found.archived_at) == (None, at(8))


async def test_touching_with_unarchive_brings_a_chat_back_in_the_same_write(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        world.chat.archive(True, at(5))
        await uow.chats.update(world.chat)
        await uow.chats.touch(world.chat.id, at(6))  # a plain touch keeps it archived
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.chats.get(world.chat.id)).archived_at == at(5)
        await uow.chats.touch(world.chat.id, at(9), unarchive=True)
        await uow.commit()
    async with uow_factory() as uow:
        found = await uow.chats.get(world.chat.id)
        assert (found.archived_at, found.updated_at) == (None, at(9))


async def test_the_list_filters_on_archived_and_pinned_and_pages_each_filter_once(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    # several chats at each time: the cursor's tie-break on id is exercised within each filter
    chats = [a_chat(world.project, world.user, now=at(s % 4)) for s in range(12)]
    for i, chat in enumerate(chats):
        if i % 3 == 1:
            chat.pin(True, at(20))
        elif i % 3 == 2:
            chat.archive(True, at(20))
    async with uow_factory() as uow:
        await uow.chats.delete(world.chat.id)
        for chat in chats:
            await uow.chats.add(chat)
        await uow.commit()

    newest_first = sorted(chats, key=lambda c: (c.updated_at, c.id), reverse=True)
    # (archived, pinned) -> the chats listed
    cases: list[tuple[bool | None, bool | None, list[Chat]]] = [
        (None, None, newest_first),
        (False, None, [c for c in newest_first if not c.archived]),
        (True, None, [c for c in newest_first if c.archived]),
        (None, True, [c for c in newest_first if c.pinned]),
        (False, False, [c for c in newest_first if not c.pinned and not c.archived]),
        (True, True, []),
    ]
    async with uow_factory() as uow:
        for archived, pinned, expected in cases:
            seen: list[Chat] = []
            before = None
            while True:
                page = await uow.chats.list_for_project(
                    world.project.id, limit=3, before=before, archived=archived, pinned=pinned
                )
                if not page:
                    break
                seen += page
                before = (page[-1].updated_at, page[-1].id)
            assert seen == expected, (archived, pinned)
    assert [len(e) for *_, e in cases[1:5]] == [8, 4, 4, 4]  # the filters are not trivially empty


async def test_a_negative_limit_is_invalid(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.chats.list_for_project(uuid.uuid4(), limit=-1)


@examples
@given(data=st.data())
async def test_any_valid_message_reads_back_equal(
    uow_factory: UowFactory, data: st.DataObject
) -> None:
    world = await committed_world(uow_factory())
    message = data.draw(messages(world.chat.id))
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.chats.get_message(message.id) == message
        assert await uow.chats.list_messages(world.chat.id) == [message]


async def test_a_message_for_a_missing_chat_is_refused_and_the_work_can_go_on(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    orphan = a_message(a_chat(world.project, world.user))
    kept = a_message(world.chat)
    async with uow_factory() as uow:
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.add_message(orphan)
        await uow.chats.add_message(kept)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.list_messages(world.chat.id) == [kept]


async def test_a_reused_message_id_is_a_conflict(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        with pytest.raises(Conflict, match="id is already taken"):
            await uow.chats.add_message(message)


async def test_a_pending_reply_is_persisted(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=world.chat.id, model="gpt-x", provider="openai", now=at(1)
    )
    async with uow_factory() as uow:
        await uow.chats.add_message(reply)
        await uow.commit()

    reply.finish(
        status=MessageStatus.COMPLETE, content="Done.", now=at(3), finish_reason="stop",
        usage=TokenUsage(prompt_tokens=12, completion_tokens=3), cost_usd=0.00042,
        ttft_ms=120, total_ms=900,
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.chats.update_message(reply)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.get_message(reply.id) == reply


async def test_an_unknown_message_is_not_found(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_message(world.chat)
    async with uow_factory() as uow:
        with pytest.raises(MessageNotFound, match="Message not found"):
            await uow.chats.get_message(ghost.id)
        with pytest.raises(MessageNotFound, match="Message not found"):
            await uow.chats.update_message(ghost)


async def test_messages_are_listed_oldest_first(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    other = a_chat(world.project, world.user)
    listed = [a_message(world.chat, now=at(s), content=f"m{s}") for s in (3, 1, 2)]
    async with uow_factory() as uow:
        await uow.chats.add(other)
        await uow.chats.add_message(a_message(other))
        for message in listed:
            await uow.chats.add_message(message)
        await uow.commit()
    async with uow_factory() as uow:
        contents = [m.content for m in await uow.chats.list_messages(world.chat.id)]
    assert contents == ["m1", "m2", "m3"]


def _with_nul(message: Message) -> Message:
    """A message holding NUL, which the domain refuses (``Message.from_user``): the store must
    refuse it too, naming no field, should one get past the domain."""
    return msgspec.structs.replace(message, content="a\x00b")


async def test_text_with_a_nul_character_is_invalid_input(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="could not be stored"):
            await uow.chats.add_message(_with_nul(a_message(world.chat)))


async def test_a_backslash_escape_in_text_is_stored_as_typed(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat, content=r"printf('\u0000 \x00')")
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        assert await uow.chats.get_message(message.id) == message


async def test_several_messages_are_added_at_once(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    other = a_chat(world.project, world.user)
    question = a_message(world.chat, now=at(1), content="Why?")
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=world.chat.id, model="gpt-x", provider="openai", now=at(2)
    )
    elsewhere = a_message(other, now=at(3))
    async with uow_factory() as uow:
        await uow.chats.add(other)
        await uow.chats.add_messages([question, reply, elsewhere])
        await uow.chats.add_messages([])
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.chats.list_messages(world.chat.id) == [question, reply]
        assert await uow.chats.list_messages(other.id) == [elsewhere]


@examples
@given(data=st.data())
async def test_any_valid_messages_added_at_once_read_back_equal(
    uow_factory: UowFactory, data: st.DataObject
) -> None:
    world = await committed_world(uow_factory())
    added = data.draw(st.lists(messages(world.chat.id), min_size=1, max_size=4))
    async with uow_factory() as uow:
        await uow.chats.add_messages(added)
        await uow.commit()

    async with uow_factory() as uow:
        assert [await uow.chats.get_message(m.id) for m in added] == added


async def test_messages_for_a_missing_chat_are_all_refused_and_the_work_can_go_on(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    taken = a_message(world.chat)
    orphan = a_message(a_chat(world.project, world.user))
    fine, kept = a_message(world.chat), a_message(world.chat, now=at(1))
    async with uow_factory() as uow:
        await uow.chats.add_message(taken)
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.add_messages([fine, orphan])
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.add_messages([taken, orphan])
        await uow.chats.add_message(kept)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.list_messages(world.chat.id) == [taken, kept]


@pytest.mark.parametrize("where", ["already stored", "given twice"])
async def test_a_taken_message_id_refuses_all_of_them_and_the_work_can_go_on(
    uow_factory: UowFactory, where: str
) -> None:
    world = await committed_world(uow_factory())
    first, fine, kept = (
        a_message(world.chat),
        a_message(world.chat),
        a_message(world.chat, now=at(1)),
    )
    batch = [fine, first] if where == "already stored" else [first, fine, first]
    async with uow_factory() as uow:
        if where == "already stored":
            await uow.chats.add_message(first)
        with pytest.raises(Conflict, match="id is already taken"):
            await uow.chats.add_messages(batch)
        await uow.chats.add_message(kept)
        await uow.commit()
    stored = [first, kept] if where == "already stored" else [kept]
    async with uow_factory() as uow:
        assert await uow.chats.list_messages(world.chat.id) == stored


async def test_a_nul_character_in_added_messages_is_invalid_input(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="could not be stored"):
            await uow.chats.add_messages([_with_nul(a_message(world.chat))])


async def test_a_new_chat_and_its_first_messages_are_added_together(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    chat = a_chat(world.project, world.user)
    question, reply = a_message(chat), a_message(chat, now=at(1))
    async with uow_factory() as uow:
        await uow.chats.add_with_messages(chat, [question, reply])
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.chats.get(chat.id) == chat
        assert await uow.chats.list_messages(chat.id) == [question, reply]


@pytest.mark.parametrize("taken", ["chat id", "message id"])
async def test_a_taken_id_stores_neither_the_chat_nor_its_messages(
    uow_factory: UowFactory, taken: str
) -> None:
    world = await committed_world(uow_factory())
    chat = a_chat(world.project, world.user)
    message = a_message(chat)
    if taken == "chat id":
        chat.id = message.chat_id = world.chat.id
    else:
        message.id = (await _stored_message(uow_factory, world.chat)).id
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.chats.add_with_messages(chat, [message])

    async with uow_factory() as uow:
        if taken == "chat id":  # the message did not go in
            with pytest.raises(MessageNotFound):
                await uow.chats.get_message(message.id)
        else:  # the chat did not go in
            with pytest.raises(ChatNotFound):
                await uow.chats.get(chat.id)


async def test_a_new_chat_in_a_missing_project_is_project_not_found(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    chat = a_chat(a_project(world.user), world.user)
    async with uow_factory() as uow:
        with pytest.raises(ProjectNotFound):
            await uow.chats.add_with_messages(chat, [a_message(chat)])


async def test_messages_of_another_chat_cannot_come_with_a_new_one(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    chat = a_chat(world.project, world.user)
    async with uow_factory() as uow:
        with pytest.raises(ValueError, match="belong to the new chat"):
            await uow.chats.add_with_messages(chat, [a_message(world.chat)])


async def _stored_message(uow_factory: UowFactory, chat: Chat) -> Message:
    message = a_message(chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.commit()
    return message


def _usage_of(reply: Message, user_id: uuid.UUID) -> UsageRecord:
    return UsageRecord(
        id=uuid.uuid4(), user_id=user_id, message_id=reply.id, model=reply.model or "m",
        provider=reply.provider or "p", prompt_tokens=7, completion_tokens=3, cost_usd=0.25,
        cached=False, created_at=at(9),
    )  # fmt: skip


def _pending_reply(chat: Chat) -> Message:
    return Message.pending_reply(
        id=uuid.uuid4(), chat_id=chat.id, model="openai/gpt-4o-mini", provider="openai", now=at(1)
    )


async def test_a_pending_reply_and_its_usage_are_saved_in_one_autocommitted_call(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    reply = _pending_reply(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_messages([reply])
        await uow.commit()
    reply.finish(
        status=MessageStatus.COMPLETE, content="Hi there", now=at(9), cost_usd=0.25,
        usage=TokenUsage(prompt_tokens=7, completion_tokens=3), finish_reason="stop",
        ttft_ms=12, total_ms=80,
    )  # fmt: skip

    async with uow_factory().autocommit() as uow:
        await uow.chats.finish_reply(reply, _usage_of(reply, world.user.id))

    async with uow_factory().read_only() as uow:
        assert await uow.chats.get_message(reply.id) == reply
        totals = await uow.usage.totals(world.user.id, since=at(0))
    assert (totals.requests, totals.prompt_tokens, totals.completion_tokens) == (1, 7, 3)
    assert totals.cost_usd == pytest.approx(0.25)


async def test_finishing_an_unknown_reply_records_no_usage(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = _pending_reply(world.chat)

    with pytest.raises(MessageNotFound):
        async with uow_factory().autocommit() as uow:
            await uow.chats.finish_reply(ghost, _usage_of(ghost, world.user.id))
    with pytest.raises(ValueError, match="about the reply"):
        async with uow_factory().autocommit() as uow:
            await uow.chats.finish_reply(
                ghost, msgspec.structs.replace(_usage_of(ghost, world.user.id), message_id=None)
            )

    async with uow_factory().read_only() as uow:
        assert (await uow.usage.totals(world.user.id, since=at(0))).requests == 0


async def test_finishing_a_reply_again_is_a_conflict_and_counts_its_usage_once(
    uow_factory: UowFactory,
) -> None:
    """How a retry after a lost answer knows that the first attempt was written."""
    world = await committed_world(uow_factory())
    reply = _pending_reply(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(reply)
        await uow.commit()
    reply.finish(
        status=MessageStatus.COMPLETE, content="The answer.", now=at(1), cost_usd=0.25,
        usage=TokenUsage(prompt_tokens=7, completion_tokens=3), finish_reason="stop",
    )  # fmt: skip
    usage = _usage_of(reply, world.user.id)
    async with uow_factory().autocommit() as uow:
        await uow.chats.finish_reply(reply, usage)

    with pytest.raises(Conflict):
        async with uow_factory().autocommit() as uow:
            await uow.chats.finish_reply(reply, usage)

    async with uow_factory().read_only() as uow:
        assert await uow.chats.get_message(reply.id) == reply
        totals = await uow.usage.totals(world.user.id, since=at(0))
    assert (totals.requests, totals.prompt_tokens, totals.completion_tokens) == (1, 7, 3)


async def test_a_replys_progress_is_saved_until_it_is_final(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    reply = _pending_reply(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(reply)
        await uow.commit()

    for text in ("Hel", "Hello, wor"):
        async with uow_factory().autocommit() as uow:
            assert await uow.chats.save_progress(reply.id, text, at(2), f"Think {text}") is True
    async with uow_factory().read_only() as uow:
        saved = await uow.chats.get_message(reply.id)
    assert (saved.status, saved.content, saved.reasoning, saved.updated_at) == (
        MessageStatus.STREAMING, "Hello, wor", "Think Hello, wor", at(2),
    )  # fmt: skip

    reply.finish(
        status=MessageStatus.COMPLETE, content="Hello, world", now=at(3), cost_usd=0.0,
        usage=TokenUsage(prompt_tokens=1, completion_tokens=2), finish_reason="stop",
    )  # fmt: skip
    async with uow_factory().autocommit() as uow:
        await uow.chats.finish_reply(reply, _usage_of(reply, world.user.id))
    async with uow_factory().autocommit() as uow:  # a checkpoint that comes too late
        assert await uow.chats.save_progress(reply.id, "Hello", at(4)) is False
        assert await uow.chats.save_progress(uuid.uuid4(), "Hello", at(4)) is False
    async with uow_factory().read_only() as uow:
        assert await uow.chats.get_message(reply.id) == reply


async def test_a_deleted_reply_is_gone_and_its_usage_stays(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    question, reply = a_message(world.chat), _pending_reply(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_messages([question, reply])
        await uow.commit()
    reply.finish(
        status=MessageStatus.COMPLETE, content="Hi", now=at(9),
        usage=TokenUsage(prompt_tokens=7, completion_tokens=3),
    )  # fmt: skip
    async with uow_factory().autocommit() as uow:
        await uow.chats.finish_reply(reply, _usage_of(reply, world.user.id))

    async with uow_factory() as uow:
        await uow.chats.delete_message(reply.id)
        with pytest.raises(MessageNotFound):  # twice: the second finds nothing
            await uow.chats.delete_message(reply.id)
    async with uow_factory() as uow:  # (not committed: still there)
        assert await uow.chats.list_messages(world.chat.id) == [question, reply]
        await uow.chats.delete_message(reply.id)
        await uow.commit()

    async with uow_factory().read_only() as uow:
        assert await uow.chats.list_messages(world.chat.id) == [question]
        assert (await uow.usage.totals(world.user.id, since=at(0))).requests == 1


async def test_touching_a_chat_moves_only_its_update_time_and_never_back(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        locked = await uow.chats.lock(world.chat.id)
        assert locked == world.chat
        await uow.chats.touch(world.chat.id, at(50))
        await uow.commit()
    async with uow_factory() as uow:  # a rename meanwhile is not undone by a touch
        world.chat.rename("Renamed", at(60))
        await uow.chats.update(world.chat)
        await uow.chats.touch(world.chat.id, at(55))  # earlier: no change
        await uow.commit()

    async with uow_factory() as uow:
        found = await uow.chats.get(world.chat.id)
        assert (found.title, found.updated_at) == ("Renamed", at(60))
        ghost = uuid.uuid4()
        with pytest.raises(ChatNotFound):
            await uow.chats.lock(ghost)
        with pytest.raises(ChatNotFound):
            await uow.chats.touch(ghost, at(70))


async def test_the_unfinished_replies_of_a_chat_or_of_a_project_are_listed(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    other = a_project(world.user)
    sibling, elsewhere = a_chat(world.project, world.user), a_chat(other, world.user)
    pending, streaming = _pending_reply(world.chat), _pending_reply(sibling)
    streaming.status = MessageStatus.STREAMING
    done, far = _pending_reply(world.chat), _pending_reply(elsewhere)
    done.finish(status=MessageStatus.COMPLETE, content="Hi", now=at(2), usage=TokenUsage())
    async with uow_factory() as uow:
        await uow.projects.add(other)
        await uow.chats.add(sibling)
        await uow.chats.add(elsewhere)
        await uow.chats.add_messages([a_message(world.chat), pending, done, streaming, far])
        await uow.commit()

    async with uow_factory().read_only() as uow:
        assert await uow.chats.unfinished_replies(world.chat.id) == [pending.id]
        assert await uow.chats.unfinished_replies(sibling.id) == [streaming.id]
        in_project = await uow.chats.unfinished_replies_in_project(world.project.id)
        assert sorted(in_project) == sorted([pending.id, streaming.id])
        assert await uow.chats.unfinished_replies_in_project(other.id) == [far.id]
        assert await uow.chats.unfinished_replies(uuid.uuid4()) == []
        assert await uow.chats.unfinished_replies_in_project(uuid.uuid4()) == []
        of_user = await uow.chats.unfinished_replies_of_user(world.user.id)
        assert sorted(of_user) == sorted([pending.id, streaming.id, far.id])
        assert await uow.chats.unfinished_replies_of_user(uuid.uuid4()) == []
