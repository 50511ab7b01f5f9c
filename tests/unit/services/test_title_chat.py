"""TitleChat: a new chat gets a model-written title, unless its user renamed it (in memory)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.integration.entities import World, committed_world
from whalli.adapters.memory.chat_metrics import InMemoryChatMetrics
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chat_titles import INSTRUCTION, TitlePolicy
from whalli.domain.model.chats import (
    Chat,
    Message,
    MessageRole,
    MessageStatus,
    TokenUsage,
    title_from,
)
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.jobs import TitleChat
from whalli.domain.model.users import Plan
from whalli.domain.services.chats.title_chat import TitleChatHandler
from whalli.ports.chat_model import ChatModel, CompletionRequest, StreamEvent
from whalli.ports.usage import UsageRecord


def _spec(id: str, provider: str, upstream: str, price_in: float, price_out: float) -> ModelSpec:
    return ModelSpec(
        id=id, provider=provider, upstream=upstream, min_plan=Plan.FREE,
        input_usd_per_mtok=price_in, output_usd_per_mtok=price_out, context_window=128_000,
    )  # fmt: skip


CATALOG = ModelCatalog(
    [
        _spec("openai/gpt-4o", "openai", "gpt-4o", 2.5, 10.0),
        _spec("openai/gpt-4o-mini", "openai", "gpt-4o-mini", 0.15, 0.6),
        _spec("dev/echo", "dev", "echo", 0.0, 0.0),
    ]
)
FIRST = "How do I bake a sourdough bread at home with a starter I made last week?"
REPLY = "Feed the starter, mix flour and water, let it rise overnight, then bake at 250 °C."
TITLE_USAGE = TokenUsage(prompt_tokens=120, completion_tokens=6)


@dataclass
class Setup:
    store: MemoryStore
    clock: ManualClock
    world: World
    metrics: InMemoryChatMetrics

    @classmethod
    async def create(cls) -> Setup:
        store = MemoryStore()
        world = await committed_world(InMemoryUnitOfWork(store))
        return cls(store, ManualClock(), world, InMemoryChatMetrics())

    async def new_chat(
        self,
        *,
        first: str = FIRST,
        reply: str = REPLY,
        model: str = "openai/gpt-4o",
        provider: str = "openai",
        status: MessageStatus = MessageStatus.COMPLETE,
    ) -> Chat:
        now = self.clock.now()
        chat = Chat.start(
            id=uuid.uuid4(), project_id=self.world.project.id, user_id=self.world.user.id,
            first_message=first, now=now,
        )  # fmt: skip
        ids = SequentialIds(start=1_000)  # ids increase: the reply sorts after the question
        question = Message.from_user(id=ids.new_id(), chat_id=chat.id, content=first, now=now)
        answer = Message.pending_reply(
            id=ids.new_id(), chat_id=chat.id, model=model, provider=provider, now=now
        )
        answer.finish(status=status, content=reply, usage=TokenUsage(), now=now)
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.chats.add_with_messages(chat, [question, answer])
            await uow.commit()
        return chat

    def handler(
        self, model: ChatModel, policy: TitlePolicy | None = None, *, provider: str = "openai"
    ) -> TitleChatHandler:
        return TitleChatHandler(
            InMemoryUnitOfWork(self.store), CATALOG, {provider: model},
            titles=policy or TitlePolicy(), clock=self.clock, ids=SequentialIds(start=500_000),
            metrics=self.metrics,
        )  # fmt: skip

    async def title(self, chat: Chat) -> str:
        async with InMemoryUnitOfWork(self.store) as uow:
            return (await uow.chats.get(chat.id)).title

    async def rename(self, chat: Chat, title: str) -> None:
        async with InMemoryUnitOfWork(self.store) as uow:
            stored = await uow.chats.get(chat.id)
            stored.rename(title, self.clock.now())
            await uow.chats.update(stored)
            await uow.commit()

    def usage(self) -> list[UsageRecord]:
        return list(self.store.tables["usage_records"].values())


def answering(*deltas: str) -> ScriptedChatModel:
    return ScriptedChatModel(deltas, provider="openai", usage=TITLE_USAGE)


@pytest.fixture
async def setup() -> Setup:
    return await Setup.create()


async def test_a_new_chat_gets_the_models_title_and_its_owner_pays_for_it(setup: Setup) -> None:
    chat = await setup.new_chat()
    model = answering("Baking ", "Sourdough ", "at Home")

    await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == "Baking Sourdough at Home"
    [request] = model.requests
    assert request.model == "gpt-4o"  # the model that wrote the first reply, by default
    assert [m.role for m in request.messages] == [MessageRole.SYSTEM, MessageRole.USER]
    assert request.messages[0].content == INSTRUCTION
    assert "at most 6 words" in INSTRUCTION
    assert FIRST in request.messages[1].content
    assert REPLY in request.messages[1].content
    assert request.params.temperature is not None
    assert request.params.temperature <= 0.3
    assert request.params.max_tokens is not None
    assert request.params.max_tokens <= 32
    assert model.open_streams == 0
    [record] = setup.usage()
    assert record.user_id == chat.user_id
    assert record.message_id is None
    assert (record.model, record.provider) == ("openai/gpt-4o", "openai")
    assert (record.prompt_tokens, record.completion_tokens) == (120, 6)
    assert record.cost_usd == pytest.approx((120 * 2.5 + 6 * 10.0) / 1_000_000)
    assert setup.metrics.titles == {"titled": 1}


async def test_long_messages_are_cut_before_they_are_sent(setup: Setup) -> None:
    chat = await setup.new_chat(first="question " * 2_000, reply="answer " * 2_000)
    model = answering("Long talk")

    await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    sent = model.requests[0].messages[1].content
    assert sent.count("question") < 300
    assert sent.count("answer") < 350
    assert len(sent) < 4_200
    assert await setup.title(chat) == "Long talk"


async def test_a_configured_title_model_is_used_instead_of_the_replys(setup: Setup) -> None:
    chat = await setup.new_chat(model="openai/gpt-4o")
    model = answering("Sourdough")

    await setup.handler(model, TitlePolicy(model="openai/gpt-4o-mini")).execute(
        TitleChat(chat_id=chat.id)
    )

    assert model.requests[0].model == "gpt-4o-mini"
    assert setup.usage()[0].model == "openai/gpt-4o-mini"
    assert await setup.title(chat) == "Sourdough"


async def test_a_chat_the_user_renamed_is_never_overwritten(setup: Setup) -> None:
    chat = await setup.new_chat()
    await setup.rename(chat, "My bread notes")
    model = answering("Baking Sourdough")

    await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == "My bread notes"
    assert model.requests == []
    assert setup.usage() == []
    assert setup.metrics.titles == {"kept": 1}


class RenamedWhileAnswering(ChatModel):
    """Answers a title, but the user renames the chat while it does (after the job read it)."""

    provider = "openai"

    def __init__(self, setup: Setup, chat: Chat) -> None:
        self.setup, self.chat = setup, chat

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        inner = answering("Baking Sourdough")
        await self.setup.rename(self.chat, "Renamed meanwhile")
        async for event in inner.stream(CompletionRequest(model="x", messages=())):
            yield event


async def test_a_rename_between_the_read_and_the_update_wins(setup: Setup) -> None:
    chat = await setup.new_chat()

    handler = setup.handler(RenamedWhileAnswering(setup, chat))
    await handler.execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == "Renamed meanwhile"
    assert len(setup.usage()) == 1  # the call was made: it is paid for
    assert setup.metrics.titles == {"kept": 1}


async def test_a_deleted_chat_is_left_alone(setup: Setup) -> None:
    chat = await setup.new_chat()
    async with InMemoryUnitOfWork(setup.store) as uow:
        await uow.chats.delete(chat.id)
        await uow.commit()
    model = answering("Ghost")

    await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    assert model.requests == []
    assert setup.usage() == []
    assert setup.metrics.titles == {"skipped": 1}


async def test_a_chat_answered_by_dev_echo_keeps_its_first_message_title(setup: Setup) -> None:
    chat = await setup.new_chat(model="dev/echo", provider="dev")
    echo = ScriptedChatModel(("echo",), provider="dev")
    model = answering("Baking")

    for policy in (TitlePolicy(), TitlePolicy(model="openai/gpt-4o-mini")):
        handler = TitleChatHandler(
            InMemoryUnitOfWork(setup.store), CATALOG, {"dev": echo, "openai": model},
            titles=policy, clock=setup.clock, ids=SequentialIds(), metrics=setup.metrics,
        )  # fmt: skip
        await handler.execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == title_from(FIRST)
    assert echo.requests == []
    assert model.requests == []
    assert setup.metrics.titles == {"skipped": 2}


async def test_titles_off_titles_nothing(setup: Setup) -> None:
    chat = await setup.new_chat()
    model = answering("Baking")

    await setup.handler(model, TitlePolicy(model="off")).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == title_from(FIRST)
    assert model.requests == []


async def test_a_chat_whose_first_reply_failed_is_not_titled(setup: Setup) -> None:
    chat = await setup.new_chat(status=MessageStatus.FAILED, reply="partial")
    model = answering("Baking")

    await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    assert model.requests == []
    assert await setup.title(chat) == title_from(FIRST)


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        (('"Sourdough', ' Basics."'), "Sourdough Basics"),
        (("Title: ", "`Home  Baking`"), "Home Baking"),
        (("**Bread\n", "at home**\nSecond line"), "Bread"),
        (("  'Sourdough\t starter   tips'  ",), "Sourdough starter tips"),
        (("word " * 60,), ("word " * 24).strip()),
    ],
)
async def test_odd_answers_are_cleaned(
    setup: Setup, deltas: tuple[str, ...], expected: str
) -> None:
    chat = await setup.new_chat()

    await setup.handler(answering(*deltas)).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == expected


async def test_an_empty_answer_keeps_the_title_but_is_paid_for(setup: Setup) -> None:
    chat = await setup.new_chat()

    await setup.handler(answering(' "" ', "\n", ".")).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == title_from(FIRST)
    assert len(setup.usage()) == 1
    assert setup.metrics.titles == {"kept": 1}


async def test_a_retryable_provider_error_is_raised_for_the_queue_to_retry(setup: Setup) -> None:
    chat = await setup.new_chat()
    error = ProviderError("The provider is overloaded.")
    error.retryable = True
    model = ScriptedChatModel((), provider="openai", error=error)

    with pytest.raises(ProviderError, match="overloaded"):
        await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == title_from(FIRST)
    assert setup.usage() == []
    assert model.open_streams == 0
    assert setup.metrics.titles == {"failed": 1}


async def test_any_other_provider_error_ends_the_job_quietly(setup: Setup) -> None:
    chat = await setup.new_chat()
    model = ScriptedChatModel(("Bak",), provider="openai", error=ProviderError("Bad request."))

    await setup.handler(model).execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == title_from(FIRST)
    # the part it answered before failing is charged, as a failed reply's is
    [record] = setup.usage()
    assert record.prompt_tokens > 0
    assert record.completion_tokens == 1  # "Bak", estimated
    assert setup.metrics.titles == {"failed": 1}


async def test_a_job_delivered_again_after_it_succeeded_does_nothing(setup: Setup) -> None:
    chat = await setup.new_chat()
    model = answering("Baking Sourdough")
    handler = setup.handler(model)

    await handler.execute(TitleChat(chat_id=chat.id))
    await handler.execute(TitleChat(chat_id=chat.id))

    assert await setup.title(chat) == "Baking Sourdough"
    assert len(model.requests) == 1
    assert len(setup.usage()) == 1
    assert setup.metrics.titles == {"titled": 1, "kept": 1}
