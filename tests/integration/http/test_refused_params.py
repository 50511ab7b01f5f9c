"""Current OpenAI and xAI models, and the parameters they refuse: through the real app and
container (Postgres, Redis) to loopback providers that refuse what the real APIs refuse
(``tests.support.fake_refusals``). A sampling parameter a model refuses is not sent (a chat's
settings, a /v1 client's defaults), a refused stop is applied by Whalli, GPT-5.1 and later take
the efforts none and xhigh, a chat's fallback is asked the nearest effort it takes, and Grok 4,
which always reasons, is given a reasoning model's time to its first token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.http.test_chat_flow import Chat, _app, _reply, _text
from tests.integration.http.test_new_features_hunt import _plan
from tests.integration.http.test_s17_hunt_c import _v1_plan
from tests.integration.http.test_v1_tools import Providers, providers
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    openai_error,
)
from tests.support.fake_refusals import openai_documented, xai_documented
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chats import MessageStatus
from whalli.domain.model.users import Plan

__all__ = ["providers"]  # the fixture, shared with the tool tests

SAMPLING = {"temperature", "top_p", "presence_penalty", "frequency_penalty", "stop"}


def asked(text: str = "Say hello") -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"{text} {uuid.uuid4()}"}]


@pytest.fixture
async def documented(providers: Providers) -> Providers:
    await _v1_plan(providers, Plan.PRO)
    providers.openai._default = openai_documented()
    return providers


# --- /v1 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["openai/gpt-5", "openai/o4-mini", "openai/gpt-5-mini"])
async def test_sampling_a_reasoning_model_refuses_is_not_sent_and_its_stop_is_applied_here(
    documented: Providers, model: str
) -> None:
    completion = await documented.sdk.chat.completions.create(
        model=model, messages=asked(), temperature=0.2, top_p=0.5, presence_penalty=0.1,
        frequency_penalty=0.1, stop=["wor"], seed=5,
    )  # fmt: skip

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Hello, ", "stop")
    sent = documented.openai.requests[-1].body
    assert not SAMPLING & sent.keys()
    assert sent["seed"] == 5  # taken: sent as asked
    # the request was closed at the stop, before the usage came: estimated, not zero
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0


async def test_a_refused_stop_cuts_a_streamed_reply_where_the_sequence_begins(
    documented: Providers,
) -> None:
    stream = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stream=True, stop=[", w"],
        stream_options={"include_usage": True},
    )  # fmt: skip
    text, finish, usage = "", None, None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage

    assert (text, finish) == ("Hello", "stop")
    assert usage is not None
    assert usage.completion_tokens > 0
    assert "stop" not in documented.openai.requests[-1].body


async def test_a_stop_the_reply_never_meets_leaves_it_whole(documented: Providers) -> None:
    completion = await documented.sdk.chat.completions.create(
        model="openai/gpt-5", messages=asked(), stop=["world!?", "Hello,,"]
    )
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Hello, world!", "stop")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4  # the provider's own count: it came


async def test_gpt_5_2_takes_temperature_at_effort_none_only(documented: Providers) -> None:
    for effort, sent_temperature in ((None, True), ("none", True), ("high", False)):
        extra: dict[str, Any] = {} if effort is None else {"reasoning_effort": effort}
        completion = await documented.sdk.chat.completions.create(
            model="openai/gpt-5.2", messages=asked(), temperature=0.4, top_p=0.9, **extra
        )
        assert completion.choices[0].message.content == "Hello, world!", effort
        sent = documented.openai.requests[-1].body
        assert ("temperature" in sent, "top_p" in sent) == (sent_temperature,) * 2, effort
        assert sent.get("reasoning_effort") == effort


async def test_the_efforts_none_and_xhigh_go_to_the_models_that_take_them(
    documented: Providers,
) -> None:
    for model, effort in (("openai/gpt-5.2", "xhigh"), ("openai/gpt-5.1", "none")):
        completion = await documented.sdk.chat.completions.create(
            model=model, messages=asked(), reasoning_effort=effort
        )
        assert completion.choices[0].finish_reason == "stop"
        assert documented.openai.requests[-1].body["reasoning_effort"] == effort


@pytest.mark.parametrize(
    ("model", "effort", "taken"),
    [
        ("openai/gpt-5.1", "minimal", "none or low or medium or high"),
        ("openai/gpt-5", "xhigh", "minimal or low or medium or high"),
        ("openai/o4-mini", "none", "low or medium or high"),
    ],
)
async def test_an_effort_the_model_does_not_take_is_refused_before_it_is_sent(
    documented: Providers, model: str, effort: str, taken: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await documented.sdk.chat.completions.create(
            model=model, messages=asked(), reasoning_effort=effort
        )

    body = raised.value.body
    assert isinstance(body, dict)
    assert body["param"] == "reasoning_effort"
    assert f"takes a reasoning effort of {taken}, not {effort}" in body["message"]
    assert documented.openai.requests == []


# --- chats ----------------------------------------------------------------------------------------
@asynccontextmanager
async def _chats(
    stack_urls: StackUrls, unique: str, openai_reply: Any = None, **env: str
) -> AsyncIterator[tuple[Chat, FakeProviderServer]]:
    async with (
        FakeProviderServer(openai_reply or openai_documented()) as provider,
        FakeProviderServer(xai_documented()) as xai,
        _app(
            stack_urls, unique, provider,
            WHALLI_XAI_API_KEY=API_KEY, WHALLI_XAI_BASE_URL=xai.url, **env,
        ) as chat,
    ):  # fmt: skip
        yield chat, xai


async def _pro(chat: Chat) -> dict[str, str]:
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    auth: dict[str, str] = alice["auth"]
    return auth


async def test_a_chats_sampling_settings_a_model_refuses_are_not_sent(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, xai):
        auth = await _pro(chat)
        params = {"temperature": 0.7, "topP": 0.8, "stop": ["world"], "presencePenalty": 0.2}
        for model, upstream in (("openai/o4-mini", chat.provider), ("xai/grok-4", xai)):
            started = await chat.start(
                auth, model=model, message=f"hi {uuid.uuid4()}", params=params
            )
            events = await chat.events(started["sessionId"])

            assert events[-1][1] == "done", events[-1]
            assert _text(events) == "Hello, "
            done = events[-1][2]
            assert done["finishReason"] == "stop"
            assert done["usage"]["completionTokens"] > 0  # estimated: the stop closed it
            sent = upstream.requests[-1].body
            assert not {"stop", "presence_penalty"} & sent.keys(), model
            # Grok 4 takes these two, o4-mini does not
            taken = {"temperature", "top_p"} & sent.keys()
            assert taken == ({"temperature", "top_p"} if model == "xai/grok-4" else set())
            reply = await _reply(chat, started["chatId"])
            assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "Hello, ")


async def test_a_chats_fallback_is_asked_the_nearest_effort_it_takes(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    documented = openai_documented()

    def down_for_gpt_5_2(request: RecordedRequest) -> Reply:
        if request.body.get("model") == "gpt-5.2":
            return Reply(status=503, body=openai_error("Overloaded.", "server_error"))
        return documented(request)

    async with _chats(stack_urls, unique, down_for_gpt_5_2) as (chat, _):
        auth = await _pro(chat)
        started = await chat.start(
            auth, model="openai/gpt-5.2", message=f"think {uuid.uuid4()}",
            params={"reasoningEffort": "xhigh"},
        )  # fmt: skip
        events = await chat.events(started["sessionId"])

        assert events[-1][1] == "done", events[-1]
        reply = await _reply(chat, started["chatId"])
        assert reply.model == "openai/gpt-5.1"
        sent = chat.provider.requests[-1].body
        assert (sent["model"], sent["reasoning_effort"]) == ("gpt-5.1", "high")


async def test_grok_4_is_given_a_reasoning_models_time_to_its_first_token(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Grok 4 thinks silently before every answer (it takes no effort): a first token after
    the plain first-token timeout is still waited for, as it is not for Grok 3."""
    env = {
        "WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S": "0.3",
        "WHALLI_PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S": "10",
    }
    async with _chats(stack_urls, unique, **env) as (chat, xai):
        auth = await _pro(chat)
        answered = {}
        for model in ("xai/grok-4", "xai/grok-3"):
            slow = xai_documented()(
                RecordedRequest("POST", "/", {"authorization": f"Bearer {API_KEY}"}, {})
            )
            slow.first_delay = 1.0
            xai.script(slow)
            started = await chat.start(auth, model=model, message=f"slow {uuid.uuid4()}")
            events = await chat.events(started["sessionId"])
            assert events[-1][1] == "done", events[-1]
            answered[model] = (await _reply(chat, started["chatId"])).model

        # Grok 3's first token was not waited for: its fallback (not delayed) answered
        assert answered == {"xai/grok-4": "xai/grok-4", "xai/grok-3": "xai/grok-3-mini"}


async def test_a_chats_verbosity_goes_to_a_model_that_takes_it_only(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _chats(stack_urls, unique) as (chat, _):
        auth = await _pro(chat)
        for model, sent_verbosity in (("openai/gpt-5", "high"), ("openai/gpt-4o", None)):
            started = await chat.start(
                auth, model=model, message=f"v {uuid.uuid4()}", params={"verbosity": "high"}
            )
            events = await chat.events(started["sessionId"])

            assert events[-1][1] == "done", events[-1]
            assert chat.provider.requests[-1].body.get("verbosity") == sent_verbosity, model
        refused = await chat.client.post(
            "/api/chat/start",
            json={"model": "openai/gpt-5", "message": "hi", "params": {"verbosity": "loud"}},
            headers=auth,
        )
        assert refused.status_code == 400, refused.text
