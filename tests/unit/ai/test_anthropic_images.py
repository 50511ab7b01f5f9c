"""Anthropic's 5 MB limit on an image's base64 data, checked before its API is called."""

from __future__ import annotations

import base64

import httpx
import pytest

from whalli.adapters.ai.anthropic import AnthropicChatModel
from whalli.adapters.ai.anthropic_images import MAX_IMAGE_BASE64, check_image_sizes
from whalli.adapters.ai.anthropic_request import messages_body
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.errors import ProviderRejectedRequest
from whalli.domain.model.images import ImagePart
from whalli.entrypoints.http.problems import status_for
from whalli.ports.chat_model import CompletionRequest

HTTPS = "https://example.com/cat.png"


def data_url(base64_chars: int) -> ImagePart:
    return ImagePart(url="data:image/png;base64," + "A" * base64_chars)


def prompt(*parts: str | ImagePart) -> tuple[PromptMessage, ...]:
    return (
        PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
        PromptMessage(role=MessageRole.USER, content="Hi"),
        PromptMessage(role=MessageRole.ASSISTANT, content="Hello!"),
        PromptMessage(role=MessageRole.USER, content="", parts=parts),
    )


def test_images_up_to_5_mb_of_base64_pass_and_urls_are_not_measured() -> None:
    messages = prompt("Compare", data_url(MAX_IMAGE_BASE64), ImagePart(url=HTTPS))

    check_image_sizes(messages)

    body = messages_body(CompletionRequest(model="claude", messages=messages), default_max_tokens=9)
    assert len(body["messages"][-1]["content"][1]["source"]["data"]) == MAX_IMAGE_BASE64


def test_a_larger_image_is_refused_as_the_api_would_naming_it_and_the_limit() -> None:
    messages = prompt("Compare", data_url(16), ImagePart(url=HTTPS), data_url(MAX_IMAGE_BASE64 + 4))

    with pytest.raises(ProviderRejectedRequest, match=r"Image 3 of the request") as raised:
        messages_body(CompletionRequest(model="claude", messages=messages), default_max_tokens=9)

    error = raised.value
    assert error.message == (
        "Image 3 of the request (messages[3].content[3].image_url.url) is too large for "
        "Anthropic models: 5,242,884 bytes of base64 data, at most 5,242,880 (5 MB)."
    )
    assert error.details["field"] == "messages[3].content[3].image_url.url"
    assert (error.details["image_index"], error.details["limit"]) == (2, MAX_IMAGE_BASE64)
    assert (error.details["kind"], error.details["provider"]) == ("invalid_request", "anthropic")
    assert not error.retryable
    assert not error.falls_back
    assert status_for(error) == 400


async def test_the_model_fails_on_iteration_without_calling_the_api() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        model = AnthropicChatModel(http, api_key="sk-ant-test", base_url="http://anthropic.test")
        request = CompletionRequest(
            model="claude", messages=prompt(data_url(MAX_IMAGE_BASE64 + 4), "What is it?")
        )
        events = model.stream(request)  # refused where the API's own 400 would be: iterating

        with pytest.raises(ProviderRejectedRequest, match="Image 1 of the request"):
            await anext(aiter(events))

    assert sent == []


def png_data_url(width: int, height: int) -> ImagePart:
    ihdr = (13).to_bytes(4) + b"IHDR" + width.to_bytes(4) + height.to_bytes(4) + bytes(9)
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + ihdr + bytes(30)).decode()
    return ImagePart(url=f"data:image/png;base64,{data}")


def test_an_image_past_8000_pixels_a_side_is_refused_naming_it_and_others_pass() -> None:
    check_image_sizes(prompt("Compare", png_data_url(8000, 8000), data_url(16)))  # 16: unknown
    messages = prompt("Compare", png_data_url(640, 480), png_data_url(8000, 8001))

    with pytest.raises(ProviderRejectedRequest, match=r"Image 2 of the request") as raised:
        messages_body(CompletionRequest(model="claude", messages=messages), default_max_tokens=9)

    error = raised.value
    assert error.message == (
        "Image 2 of the request (messages[3].content[2].image_url.url) cannot go to Anthropic "
        "models: it is 8000x8001 pixels; anthropic takes at most 8000 a side."
    )
    assert error.details["field"] == "messages[3].content[2].image_url.url"
    assert (error.details["image_index"], error.details["limit"]) == (1, 8000)
    assert not error.falls_back
    assert status_for(error) == 400
