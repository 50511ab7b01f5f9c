"""Image input (vision) end to end with the official ``openai`` SDK: user messages with
``image_url`` parts (a base64 data URL, an https URL) → /v1 → Whalli's real app and container
(Postgres, Redis) → its OpenAI adapter (the parts as sent, in order) or its Anthropic adapter
(``image`` blocks) → a loopback provider; what reached the provider, the 400s (before any
provider is called), the body limit and the cache."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import openai
import pytest

from tests.integration.http.test_v1_tools import CLAUDE, GPT, Providers, providers
from tests.support.fake_prompt_cache import unmarked
from tests.support.fake_providers import DELTAS
from whalli.adapters.ai.anthropic_images import MAX_IMAGE_BASE64
from whalli.domain.model.images import MAX_IMAGE_BYTES, MAX_IMAGES

__all__ = ["providers"]  # the fixture, shared with the tool tests

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(200))).decode()
DATA_URL = f"data:image/png;base64,{PNG}"
HTTPS = "https://images.example.com/cat.png?size=large"
REPLY = "".join(DELTAS)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def image(url: str, detail: str | None = None) -> dict[str, Any]:
    image_url = {"url": url} if detail is None else {"url": url, "detail": detail}
    return {"type": "image_url", "image_url": image_url}


def question() -> str:
    # unique: the shared Redis may hold the cached replies of other runs
    return f"What is in this picture? {uuid.uuid4()}"


async def ask(
    providers: Providers, model: str, messages: list[Any], *, stream: bool, **extra: Any
) -> str:
    sdk = providers.sdk.chat.completions
    if not stream:
        completion = await sdk.create(model=model, messages=messages, **extra)
        assert completion.choices[0].finish_reason == "stop"
        return completion.choices[0].message.content or ""
    chunks = await sdk.create(model=model, messages=messages, stream=True, **extra)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


# --- OpenAI-compatible providers: the parts as sent ---------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("url", "detail"), [(DATA_URL, "high"), (HTTPS, None)], ids=["data", "https"]
)
async def test_openai_gets_the_image_parts_as_sent_in_order(
    providers: Providers, url: str, detail: str | None, stream: bool
) -> None:
    asked = question()
    parts = [text(asked), image(url, detail), text(" Be brief.")]
    messages = [{"role": "system", "content": "You describe images."},
                {"role": "user", "content": parts}]  # fmt: skip

    answer = await ask(providers, GPT, messages, stream=stream)

    assert answer == REPLY
    [sent] = providers.openai.requests
    assert sent.body["messages"] == [
        {"role": "system", "content": "You describe images."},
        {"role": "user", "content": parts},
    ]
    assert providers.anthropic.requests == []


async def test_text_only_parts_are_still_sent_as_one_text(providers: Providers) -> None:
    asked = question()

    await ask(providers, GPT, [{"role": "user", "content": [text(asked), text("!")]}], stream=False)

    assert providers.openai.requests[-1].body["messages"] == [
        {"role": "user", "content": asked + "!"}
    ]


# --- Anthropic: image blocks --------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_gets_image_blocks_in_order_with_the_text(
    providers: Providers, stream: bool
) -> None:
    asked = question()
    parts = [text(asked), image(DATA_URL, "low"), text("and"), image(HTTPS)]
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! Send me pictures."},
        {"role": "user", "content": parts},
    ]

    answer = await ask(providers, CLAUDE, messages, stream=stream)

    assert answer == REPLY
    [sent] = providers.anthropic.requests
    assert unmarked(sent.body)["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! Send me pictures."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": asked},
                {"type": "image",
                 "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "text", "text": "and"},
                {"type": "image", "source": {"type": "url", "url": HTTPS}},
            ],
        },
    ]  # fmt: skip
    assert providers.openai.requests == []  # Claude answered, not its fallback


# --- refusals: OpenAI's error shape, naming the param, before any provider is called ------------
def user_says(*parts: dict[str, Any]) -> list[Any]:
    return [{"role": "user", "content": [text(question()), *parts]}]


BAD_IMAGES: dict[str, tuple[str, list[Any], str, str]] = {
    "file_scheme": (GPT, user_says(image("file:///etc/passwd")),
                    "messages[0].content[1].image_url.url", "https: or http: URL"),
    "ftp_scheme": (CLAUDE, user_says(image("ftp://example.com/a.png")),
                   "messages[0].content[1].image_url.url", "'ftp:' given"),
    "bad_media_type": (GPT, user_says(image(f"data:image/svg+xml;base64,{PNG}")),
                       "messages[0].content[1].image_url.url", "media type"),
    "bad_base64": (CLAUDE, user_says(image("data:image/png;base64,not*base64")),
                   "messages[0].content[1].image_url.url", "valid base64"),
    "bad_detail": (GPT, user_says(image(HTTPS, "ultra")),
                   "messages[0].content[1].image_url.detail", "'auto', 'low', 'high'"),
    "no_image_url": (GPT, user_says({"type": "image_url"}),
                     "messages[0].content[1].image_url", "is required"),
    "too_many": (GPT, [*user_says(*[image(HTTPS)] * 10),
                       *user_says(*[image(DATA_URL)] * (MAX_IMAGES - 10 + 1))],
                 f"messages[1].content[{MAX_IMAGES - 10 + 1}]", f"at most {MAX_IMAGES} images"),
    "in_a_system_message": (GPT, [{"role": "system", "content": [text("See"), image(HTTPS)]},
                                  *user_says()],
                            "messages[0].content[1]", "only read in user messages"),
    "in_an_assistant_message": (CLAUDE, [*user_says(),
                                         {"role": "assistant", "content": [image(HTTPS)]},
                                         *user_says()],
                                "messages[1].content[0]", "only read in user messages"),
    "dev_echo": ("dev/echo", user_says(image(HTTPS)),
                 "messages[0].content[1]", "does not read images"),
    "audio": (GPT, user_says({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}),
              "messages[0].content", "send text or image_url"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_IMAGES.values()), ids=list(BAD_IMAGES))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_bad_image_is_a_400_naming_the_param_and_reaches_no_provider(
    providers: Providers, case: tuple[str, list[Any], str, str], stream: bool
) -> None:
    model, messages, param, says = case

    with pytest.raises(openai.BadRequestError, match=says) as raised:
        await ask(providers, model, messages, stream=stream)

    body = raised.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["param"], body["code"]) == (
        "invalid_request_error",
        param,
        "invalid_input",
    )
    assert providers.openai.requests == []
    assert providers.anthropic.requests == []


async def test_an_image_of_20_mb_is_read_and_a_larger_one_is_a_400_naming_it(
    providers: Providers,
) -> None:
    largest = "A" * (MAX_IMAGE_BYTES // 3 * 4)  # 20 MiB decoded, 26.7 MiB of base64
    too_large = largest + "AAAA"

    answer = await ask(providers, GPT, user_says(image(f"data:image/png;base64,{largest}")),
                       stream=False)  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="at most") as raised:
        await ask(providers, GPT, user_says(image(f"data:image/png;base64,{too_large}")),
                  stream=False)  # fmt: skip

    assert answer == REPLY
    [sent] = providers.openai.requests
    assert sent.body["messages"][0]["content"][1]["image_url"]["url"].endswith(largest[-100:])
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["param"] == "messages[0].content[1].image_url.url"
    assert too_large not in body["message"]


async def test_a_body_over_the_limit_is_a_413_saying_the_limit(providers: Providers) -> None:
    data = "A" * (33 * 1024 * 1024)

    with pytest.raises(openai.APIStatusError, match="at most 33554432 bytes") as raised:
        await ask(providers, GPT, user_says(image(f"data:image/png;base64,{data}")), stream=False)

    assert raised.value.status_code == 413
    assert providers.openai.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_an_image_over_anthropics_5_mb_is_a_400_naming_it_and_claude_is_not_called(
    providers: Providers, stream: bool
) -> None:
    too_large = "A" * (MAX_IMAGE_BASE64 + 4)  # base64 text, as Anthropic's API measures it
    messages = user_says(image(DATA_URL), text("and"), image(f"data:image/png;base64,{too_large}"))

    with pytest.raises(openai.BadRequestError, match="Image 2 of the request") as raised:
        await ask(providers, CLAUDE, messages, stream=stream)

    body = raised.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"], body["param"]) == (
        "invalid_request_error",
        "provider_rejected_request",
        "messages[0].content[3].image_url.url",
    )
    assert "at most 5,242,880 (5 MB)" in body["message"]
    assert too_large not in body["message"]
    assert providers.anthropic.requests == []
    assert providers.openai.requests == []  # nor its fallback


# --- the cache: keyed by the images -------------------------------------------------------------
async def test_the_same_text_with_another_image_is_another_cache_entry(
    providers: Providers,
) -> None:
    asked = question()
    other = f"data:image/png;base64,{base64.b64encode(b'another picture').decode()}"

    async def ask_with(*parts: dict[str, Any]) -> str:
        messages = [{"role": "user", "content": [text(asked), *parts]}]
        return await ask(providers, GPT, messages, stream=False, temperature=0)

    answers = [
        await ask_with(image(DATA_URL)),
        await ask_with(image(other)),
        await ask_with(image(other, "low")),
        await ask_with(image(DATA_URL)),  # a hit
        await ask_with(image(other)),  # a hit
    ]

    sent = [r.body["messages"][0]["content"][1]["image_url"] for r in providers.openai.requests]
    assert sent == [{"url": DATA_URL}, {"url": other}, {"url": other, "detail": "low"}]
    assert answers == [REPLY] * 5
    await ask(providers, GPT, [{"role": "user", "content": asked}], stream=False, temperature=0)
    assert len(providers.openai.requests) == 4  # the text alone: its own entry
