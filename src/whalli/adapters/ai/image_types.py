"""The image types a provider takes, checked before calling its API.

xAI reads only PNG and JPEG images (``images.image_media_types``; its docs: "Supported image
file types: jpg/jpeg or png"), where OpenAI also reads GIF and WebP. A /v1 request holding a
``data:`` URL image of another type is refused here as the API would refuse it
(``ProviderRejectedRequest``, kind ``invalid_request``: the caller's 400), naming the image, and
the API is not called (the chat flow sends such an attached file as its text). An image URL is
fetched by the provider: its type cannot be told here.
"""

from __future__ import annotations

from whalli.adapters.ai._streaming import provider_error
from whalli.domain.model.chats import PromptMessage
from whalli.domain.model.images import image_media_types


def check_image_types(messages: tuple[PromptMessage, ...], provider: str) -> None:
    """Raises ``ProviderRejectedRequest`` for the first data URL image of a type ``provider``
    does not take, naming it by its field (``messages[i].content[j].image_url.url``) and its
    place among the request's images (``details["image_index"]``, from 0)."""
    allowed = image_media_types(provider)
    number = 0
    for index, message in enumerate(messages):
        for position, part in enumerate(message.parts):
            if isinstance(part, str):
                continue
            number += 1
            media_type = part.media_type
            if media_type is None or media_type in allowed:
                continue
            field = f"messages[{index}].content[{position}].image_url.url"
            raise provider_error(
                f"Image {number} of the request ({field}) is {media_type}; {provider} models "
                f"read {', '.join(sorted(allowed))} images.",
                provider=provider,
                kind="invalid_request",
                retryable=False,
                field=field,
                image_index=number - 1,
            )
