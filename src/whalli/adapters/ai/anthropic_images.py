"""Anthropic's limits on images, checked before calling its API.

The Messages API refuses an image whose base64 data is over 5 MB (``MAX_IMAGE_BASE64``, 5 MiB:
its 400 says "image exceeds 5 MB maximum: ... bytes > 5242880 bytes", counting the base64
text, not the decoded image: ``images.max_image_bytes("anthropic")``, 3.75 MiB, decoded), where
OpenAI takes 20 MB (``images.MAX_IMAGE_BYTES``). A /v1 request holding a larger one is refused
here as the API would refuse it (``ProviderRejectedRequest``, kind ``invalid_request``: the
caller's 400), naming the image, and the API is not called (the chat flow's attached images
are already kept under that size). So is an image larger than 8000 pixels a side, which the
API refuses too (``images.max_image_side``, read from the image's header; one whose size
cannot be read is sent). An image URL is fetched by Anthropic: its size cannot be told here.
The API's limit of 100 images a request is above ours (``images.MAX_IMAGES``, 20).
"""

from __future__ import annotations

from whalli.adapters.ai._streaming import provider_error
from whalli.domain.model.chats import PromptMessage
from whalli.domain.model.images import (
    ImagePart,
    max_image_bytes,
    max_image_side,
    provider_refusal,
)

MAX_IMAGE_BASE64 = max_image_bytes("anthropic") // 3 * 4  # 5 MiB of base64 text


def check_image_sizes(messages: tuple[PromptMessage, ...]) -> None:
    """Raises ``ProviderRejectedRequest`` for the first data URL image over a limit, naming it
    by its field (``messages[i].content[j].image_url.url``, as a /v1 request sent it) and its
    place among the request's images (``details["image_index"]``, from 0)."""
    number = 0
    for index, message in enumerate(messages):
        for position, part in enumerate(message.parts):
            if isinstance(part, str):
                continue
            number += 1
            size = len(part.data or "")
            field = f"messages[{index}].content[{position}].image_url.url"
            if size <= MAX_IMAGE_BASE64:
                _check_pixels(part, field, number)
                continue
            raise provider_error(
                f"Image {number} of the request ({field}) is too large for Anthropic models: "
                f"{size:,} bytes of base64 data, at most {MAX_IMAGE_BASE64:,} (5 MB).",
                provider="anthropic",
                kind="invalid_request",
                retryable=False,
                field=field,
                image_index=number - 1,
                limit=MAX_IMAGE_BASE64,
            )


def _check_pixels(part: ImagePart, field: str, number: int) -> None:
    reason = provider_refusal(part, "anthropic")
    if reason is None:
        return
    raise provider_error(
        f"Image {number} of the request ({field}) cannot go to Anthropic models: {reason}.",
        provider="anthropic",
        kind="invalid_request",
        retryable=False,
        field=field,
        image_index=number - 1,
        limit=max_image_side("anthropic"),
    )
