"""Images through the stateless completion (/v1): they reach a model that reads images, are
part of the cache key, are refused by a model that does not (or outside user messages), and
fallbacks only go to models that read them."""

from __future__ import annotations

import msgspec
import pytest

from tests.unit.services.test_complete_chat import World, spec
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.errors import InvalidInput, ProviderError
from whalli.domain.model.images import ImagePart, image_part
from whalli.domain.model.users import User
from whalli.domain.services.chat.complete import CompleteChat, CompleteChatHandler
from whalli.ports.chat_model import StreamDelta

CAT = image_part("https://example.com/cat.png", None, field="f")
DOG = image_part("https://example.com/dog.png", "low", field="f")


def seeing(model_id: str, fallback: str | None = None) -> ModelSpec:
    return msgspec.structs.replace(spec(model_id, fallback=fallback), vision=True)


def asking(*images: ImagePart, role: MessageRole = MessageRole.USER) -> tuple[PromptMessage, ...]:
    parts = ("What is this?", *images)
    return (PromptMessage(role=role, content="What is this?", parts=parts),)


def handler_for(world: World, catalog: ModelCatalog) -> CompleteChatHandler:
    world.enabled.add("dev")
    return CompleteChatHandler(
        InMemoryUnitOfWork(world.store), world.cache, catalog, world.models, world.enabled,
        clock=world.clock, ids=world.ids, metrics=world.metrics,
    )  # fmt: skip


async def complete(
    handler: CompleteChatHandler, user: User, model: str, messages: tuple[PromptMessage, ...]
) -> list[object]:
    command = CompleteChat(user_id=user.id, model=model, messages=messages)
    return [event async for event in handler.stream(command)]


async def test_images_reach_a_model_that_reads_them_and_each_image_is_its_own_cache_entry() -> None:
    model = ScriptedChatModel(["a cat"], provider="openai")
    world = World({"openai": model})
    handler = handler_for(world, ModelCatalog([seeing("openai/mini")]))
    user = await world.user()

    for messages in (asking(CAT), asking(DOG), asking(CAT), asking(DOG)):
        command = CompleteChat(user_id=user.id, model="openai/mini", messages=messages)
        [event async for event in handler.stream(command)]

    assert [r.messages for r in model.requests] == [asking(CAT), asking(DOG)]
    assert [r.cached for r in await world.usage()] == [False, False, True, True]


async def test_a_model_that_does_not_read_images_refuses_them_naming_the_first() -> None:
    echo = ScriptedChatModel(["hi"], provider="dev")
    world = World({"dev": echo})
    handler = handler_for(world, ModelCatalog([spec("dev/echo")]))

    with pytest.raises(InvalidInput, match="'dev/echo' does not read images") as raised:
        await complete(handler, await world.user(), "dev/echo", asking(CAT))

    assert raised.value.details["field"] == "messages[0].content[1]"
    assert echo.requests == []
    assert await world.usage() == []


async def test_images_outside_a_user_message_are_refused_before_any_model_is_called() -> None:
    model = ScriptedChatModel(["a cat"], provider="openai")
    world = World({"openai": model})
    handler = handler_for(world, ModelCatalog([seeing("openai/mini")]))

    with pytest.raises(InvalidInput, match="only read in user messages") as raised:
        await complete(
            handler, await world.user(), "openai/mini", asking(CAT, role=MessageRole.SYSTEM)
        )

    assert raised.value.details["field"] == "messages[0].content[1]"
    assert model.requests == []


async def test_with_images_a_fallback_that_does_not_read_them_is_passed_over() -> None:
    broken = ScriptedChatModel([], provider="anthropic", error=ProviderError("overloaded"))
    blind = ScriptedChatModel(["hi"], provider="openai")
    world = World({"anthropic": broken, "openai": blind})
    catalog = ModelCatalog([spec("openai/mini"), seeing("anthropic/haiku", "openai/mini")])
    handler = handler_for(world, catalog)

    user = await world.user()

    with pytest.raises(ProviderError, match="overloaded"):
        await complete(handler, user, "anthropic/haiku", asking(CAT))
    assert blind.requests == []  # it would answer without seeing the image
    without = await complete(
        handler, user, "anthropic/haiku", (PromptMessage(role=MessageRole.USER, content="Hi"),)
    )
    assert without[0] == StreamDelta(text="hi")


async def test_with_images_a_failing_model_hands_over_to_a_fallback_that_reads_them() -> None:
    broken = ScriptedChatModel([], provider="anthropic", error=ProviderError("overloaded"))
    fallback = ScriptedChatModel(["a cat"], provider="openai")
    world = World({"anthropic": broken, "openai": fallback})
    catalog = ModelCatalog([seeing("openai/mini"), seeing("anthropic/haiku", "openai/mini")])
    handler = handler_for(world, catalog)

    await complete(handler, await world.user(), "anthropic/haiku", asking(CAT, DOG))

    assert handler.answered_by == "openai/mini"
    assert fallback.requests[0].messages == asking(CAT, DOG)
