"""Contract of FeedbackRepository (readers' ratings of replies), in memory and on Postgres."""

from __future__ import annotations

import uuid

import pytest

from whalli.domain.model.chat_imports import IMPORTED_PROVIDER
from whalli.domain.model.chats import Message
from whalli.domain.model.errors import InvalidInput, MessageNotFound
from whalli.domain.model.feedback import Feedback, Rating
from whalli.domain.model.users import User
from whalli.ports.feedback import ModelRatings

from ..conftest import UowFactory
from ..entities import a_message, a_user, at, committed_world


def feedback(
    message_id: uuid.UUID, user: User, rating: Rating = Rating.UP, *, comment: str | None = None,
    seconds: float = 0, earlier: Feedback | None = None,
) -> Feedback:  # fmt: skip
    return Feedback.give(
        message_id=message_id, user_id=user.id, rating=rating, comment=comment, now=at(seconds),
        earlier=earlier,
    )  # fmt: skip


async def test_feedback_reads_back_is_replaced_and_removed(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    other = a_user()
    message = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.users.add(other)
        await uow.chats.add_message(message)
        first = feedback(message.id, world.user, comment="Spot on. é🐋")
        await uow.feedback.put(first)
        await uow.feedback.put(feedback(message.id, other, Rating.DOWN))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.feedback.find(message.id, world.user.id) == first
        changed = feedback(message.id, world.user, Rating.DOWN, earlier=first, seconds=60)
        await uow.feedback.put(changed)
        await uow.commit()
    async with uow_factory() as uow:
        mine = await uow.feedback.of_user(world.user.id, [message.id, uuid.uuid4()])
        assert mine == {message.id: changed}
        assert (changed.created_at, changed.comment) == (first.created_at, None)
        theirs = await uow.feedback.find(message.id, other.id)
        assert theirs is not None
        assert theirs.rating is Rating.DOWN
        assert await uow.feedback.of_user(world.user.id, []) == {}
        assert await uow.feedback.remove(message.id, world.user.id) is True
        assert await uow.feedback.remove(message.id, world.user.id) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.feedback.find(message.id, world.user.id) is None
        assert await uow.feedback.find(message.id, other.id) is not None


async def test_feedback_needs_its_message_and_goes_with_it(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat)
    async with uow_factory() as uow:
        with pytest.raises(MessageNotFound):
            await uow.feedback.put(feedback(uuid.uuid4(), world.user))
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.feedback.put(feedback(message.id, world.user))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.chats.delete_message(message.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.feedback.find(message.id, world.user.id) is None


async def test_ratings_are_counted_per_model_of_the_rated_reply(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    # the Postgres database is shared by every test: a range of time nobody else rates in
    t0 = float(uuid.uuid4().int % 10**9 + 10**6)
    others = [a_user() for _ in range(3)]
    replies = {
        model: Message.pending_reply(
            id=uuid.uuid4(), chat_id=world.chat.id, model=model, provider="p", now=at(0)
        )
        for model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku")
    }
    gpt, claude = replies.values()
    async with uow_factory() as uow:
        for user in others:
            await uow.users.add(user)
        for reply in replies.values():
            await uow.chats.add_message(reply)
        await uow.feedback.put(feedback(gpt.id, world.user, comment="good", seconds=t0 + 10))
        await uow.feedback.put(feedback(gpt.id, others[0], Rating.DOWN, seconds=t0 + 20))
        await uow.feedback.put(
            feedback(claude.id, others[1], Rating.DOWN, comment="no", seconds=t0 + 30)
        )
        await uow.feedback.put(feedback(claude.id, others[2], seconds=t0 + 100))  # after the range
        await uow.feedback.put(feedback(gpt.id, others[2], seconds=t0 - 1))  # before it
        await uow.commit()

    async with uow_factory() as uow:
        counted = await uow.feedback.by_model(since=at(t0), until=at(t0 + 100))

    assert counted == [
        ModelRatings(model="anthropic/claude-3-5-haiku", up=0, down=1, comments=1),
        ModelRatings(model="openai/gpt-4o-mini", up=1, down=1, comments=1),
    ]


async def test_imported_replies_are_counted_as_one_model_whatever_their_slug(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    t0 = float(uuid.uuid4().int % 10**9 + 10**6)  # a range of time nobody else rates in
    replies = [
        Message.pending_reply(
            id=uuid.uuid4(), chat_id=world.chat.id, model=model, provider=provider, now=at(0)
        )
        for model, provider in [
            ("chatgpt/made-up-1", IMPORTED_PROVIDER), ("chatgpt/made-up-2", IMPORTED_PROVIDER),
            ("", IMPORTED_PROVIDER), ("openai/gpt-4o-mini", "openai"),
        ]
    ]  # fmt: skip
    replies[2].model = None  # an imported answer whose export named no model
    async with uow_factory() as uow:
        for i, reply in enumerate(replies):
            await uow.chats.add_message(reply)
            rating = Rating.DOWN if i == 1 else Rating.UP
            await uow.feedback.put(feedback(reply.id, world.user, rating, seconds=t0 + i))
        await uow.commit()

    async with uow_factory() as uow:
        counted = await uow.feedback.by_model(since=at(t0), until=at(t0 + 100))

    assert counted == [
        ModelRatings(model=IMPORTED_PROVIDER, up=2, down=1, comments=0),
        ModelRatings(model="openai/gpt-4o-mini", up=1, down=0, comments=0),
    ]


async def test_a_nul_character_in_a_comment_is_invalid_input_and_nothing_is_stored(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput):
            await uow.feedback.put(feedback(message.id, world.user, comment="bad\x00"))
    async with uow_factory() as uow:
        assert await uow.feedback.find(message.id, world.user.id) is None
