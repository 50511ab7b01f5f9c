"""xAI's image types (PNG and JPEG), checked before its API is called."""

from __future__ import annotations

import httpx
import pytest

from whalli.adapters.ai.image_types import check_image_types
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.errors import ProviderRejectedRequest
from whalli.domain.model.images import ImagePart
from whalli.entrypoints.http.problems import status_for
from whalli.ports.chat_model import CompletionRequest


def image(media_type: str) -> ImagePart:
    return ImagePart(url=f"data:{media_type};base64,AAAA")


def prompt(*parts: str | ImagePart) -> tuple[PromptMessage, ...]:
    return (
        PromptMessage(role=MessageRole.USER, content="Hi"),
        PromptMessage(role=MessageRole.USER, content="", parts=parts),
    )


def test_xai_takes_png_jpeg_and_urls_and_openai_every_image_type() -> None:
    check_image_types(
        prompt(image("image/png"), image("image/jpeg"), ImagePart(url="https://x.test/a.gif")),
        "xai",
    )
    check_image_types(prompt(image("image/gif"), image("image/webp")), "openai")


@pytest.mark.parametrize("media_type", ["image/gif", "image/webp"])
def test_xai_refuses_another_type_naming_the_image(media_type: str) -> None:
    with pytest.raises(ProviderRejectedRequest, match="Image 2 of the request") as raised:
        check_image_types(prompt("Look", image("image/png"), image(media_type)), "xai")

    error = raised.value
    assert error.message == (
        f"Image 2 of the request (messages[1].content[2].image_url.url) is {media_type}; "
        "xai models read image/jpeg, image/png images."
    )
    assert (error.details["field"], error.details["image_index"]) == (
        "messages[1].content[2].image_url.url", 1,
    )  # fmt: skip
    assert not error.falls_back
    assert status_for(error) == 400


async def test_the_xai_model_fails_on_iteration_without_calling_the_api() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        model = OpenAIChatModel(http, base_url="http://xai.test/v1", provider="xai")
        events = model.stream(CompletionRequest(model="grok", messages=prompt(image("image/gif"))))

        with pytest.raises(ProviderRejectedRequest, match="Image 1 of the request"):
            await anext(aiter(events))

    assert sent == []
