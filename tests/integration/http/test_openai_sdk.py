"""The official ``openai`` SDK against Whalli: only ``base_url`` and the API key change.

The app runs under uvicorn on loopback (a real HTTP server, real SSE), on the fake container:
the in-memory store and the network-free ``dev/echo`` model.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import openai
import pytest

from tests.support.live_server import threaded_server
from tests.unit.http.accounts import seed_api_key
from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.config import Settings
from whalli.domain.model.api_keys import API_KEY_PREFIX
from whalli.domain.model.errors import ProviderError
from whalli.entrypoints.http.app import create_app
from whalli.ports.chat_model import ChatModel, CompletionRequest, StreamDelta, StreamEvent


@dataclass
class Whalli:
    container: FakeContainer
    base_url: str
    api_key: str

    def sdk(self, api_key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key or self.api_key, max_retries=0)


@pytest.fixture(scope="module")
def whalli() -> Iterator[Whalli]:
    container = FakeContainer(Settings(env="test"), [FakeProbe("postgres")])
    with threaded_server(create_app(container)) as (loop, base_url):
        seeding = asyncio.run_coroutine_threadsafe(seed_api_key(container, "sdk"), loop)
        _, secret = seeding.result(timeout=30)
        yield Whalli(container, f"{base_url}/v1", secret)


def test_a_completion_through_the_sdk(whalli: Whalli) -> None:
    completion = whalli.sdk().chat.completions.create(
        model="dev/echo",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello from the official SDK"},
        ],
        temperature=0.3,
        user="someone",  # an option Whalli does not use: ignored, as OpenAI clients expect
    )

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from the official SDK"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 5)


def test_a_stream_through_the_sdk_with_usage(whalli: Whalli) -> None:
    stream = whalli.sdk().chat.completions.create(
        model="dev/echo",
        messages=[{"role": "user", "content": "stream these five words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    assert pieces == ["", "stream ", "these ", "five ", "words", None]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.completion_tokens, usage.total_tokens) == (4, 8)


def test_the_model_list_through_the_sdk(whalli: Whalli) -> None:
    models = {m.id: m for m in whalli.sdk().models.list()}

    assert "dev/echo" in models
    assert "openai/gpt-4o" not in models  # a pro model, and this key's user is on the free plan
    assert models["dev/echo"].owned_by == "dev"


def test_refusals_are_the_sdks_own_exceptions(whalli: Whalli) -> None:
    sdk = whalli.sdk()
    hello = [{"role": "user", "content": "Hi"}]

    with pytest.raises(openai.PermissionDeniedError, match="does not include openai/gpt-4o"):
        sdk.chat.completions.create(model="openai/gpt-4o", messages=hello)
    with pytest.raises(openai.NotFoundError, match="not in the catalog"):
        sdk.chat.completions.create(model="nope/none", messages=hello, stream=True)
    with pytest.raises(openai.AuthenticationError, match="invalid"):
        whalli.sdk(api_key=API_KEY_PREFIX + "wrong").models.list()


def test_a_provider_failing_mid_stream_is_an_api_error_in_the_sdk(whalli: Whalli) -> None:
    whalli.container.models["dev"] = ScriptedChatModel(
        ["Half a "], provider="dev", error=ProviderError("The upstream stream was cut.")
    )
    received: list[str | None] = []

    def read() -> None:
        stream = whalli.sdk().chat.completions.create(
            model="dev/echo", messages=[{"role": "user", "content": "fail"}], stream=True
        )
        received.extend(chunk.choices[0].delta.content for chunk in stream)

    try:
        with pytest.raises(openai.APIError, match="upstream stream was cut"):
            read()
    finally:
        whalli.container.models["dev"] = DevEchoChatModel()

    assert received == ["", "Half a "]


class _StallingModel(ChatModel):
    """Sends one delta, then waits forever: only the client going away ends the reply."""

    def __init__(self) -> None:
        self.provider = "dev"
        self.closed = threading.Event()

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        try:
            yield StreamDelta(text="first words ")
            await asyncio.Event().wait()
        finally:
            self.closed.set()


def test_a_client_that_hangs_up_mid_stream_still_has_its_usage_recorded(whalli: Whalli) -> None:
    stalling = _StallingModel()
    whalli.container.models["dev"] = stalling
    tables = whalli.container.store.tables  # a commit replaces the tables: read them afresh
    before = set(tables["usage_records"])
    try:
        stream = whalli.sdk().chat.completions.create(
            model="dev/echo", messages=[{"role": "user", "content": "never ends"}], stream=True
        )
        chunks = iter(stream)
        assert [next(chunks).choices[0].delta.content for _ in range(2)] == ["", "first words "]
        stream.close()
        # The server notices the hang-up on its own schedule; wait for the end state.
        deadline = time.monotonic() + 30
        while set(tables["usage_records"]) == before and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        whalli.container.models["dev"] = DevEchoChatModel()

    records = tables["usage_records"]
    [new] = [records[key] for key in set(records) - before]
    assert (new.model, new.cached, new.completion_tokens) == ("dev/echo", False, 3)
    assert stalling.closed.wait(30), "the upstream stream was never closed"
    assert whalli.container.chat_metrics.replies[-1]["status"] == "aborted"
