"""Images in a prompt (vision): the image parts of a user message, as OpenAI's API takes them.

An image is a URL the provider fetches (``https:`` or ``http:``) or a ``data:`` URL holding the
image itself, base64-encoded. Whalli never fetches an image URL: it passes the URL on to the
provider, which fetches it from its own network. No request leaves Whalli for an image, so
there is no server-side request forgery surface on our side (no allow list, no resolver).

Rules (``InvalidInput`` naming the field as OpenAI's API does, e.g.
``messages[3].content[1].image_url.url``), checked before any provider is called:
- a URL is ``https:`` or ``http:`` with a host, or a ``data:`` URL
  ``data:<media type>;base64,<data>`` whose media type is one both OpenAI and Anthropic read
  (``IMAGE_MEDIA_TYPES``) and whose data is valid base64 (standard alphabet, padded, no
  whitespace), at most ``MAX_IMAGE_BYTES`` decoded (20 MB, OpenAI's limit per image; a route's
  body limit may refuse a large one first, 413);
- ``detail``, when given, is ``auto``, ``low`` or ``high`` (sent on as given; Anthropic has none);
- a request holds at most ``MAX_IMAGES`` images (20), only in user messages.

Providers take less than that, each its own way (``provider_refusal``): xAI only PNG and JPEG
images (``image_media_types``; its docs: "jpg/jpeg or png"), Anthropic at most 3.75 MiB decoded
(``max_image_bytes``) and 8000 pixels a side (``max_image_side``; read from the image's header,
``image_size``: one whose size cannot be read is sent as it is, and the provider judges).

The token estimate (used when a provider reports no usage) counts ``IMAGE_TOKENS`` per image:
about what Claude counts for an image at its largest size (1.15 megapixels) and more than
OpenAI counts for a ``high`` detail 1024x1024 image (765), so an estimate errs on the high side.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.image_size import data_url_size

if TYPE_CHECKING:
    from whalli.domain.model.chats import PromptMessage

MAX_IMAGES = 20
MAX_IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_TOKENS = 1_600
IMAGE_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The decoded bytes of one image a provider takes, where less than ``MAX_IMAGE_BYTES``:
# Anthropic counts an image's base64 text, at most 5 MiB of it.
_PROVIDER_IMAGE_BYTES = {"anthropic": 5 * 1024 * 1024 // 4 * 3}
# The media types a provider takes, where fewer than ``IMAGE_MEDIA_TYPES``.
_PROVIDER_IMAGE_TYPES = {"xai": frozenset({"image/png", "image/jpeg"})}
# The longest side (pixels) of an image a provider takes: Anthropic refuses one over 8000 px
# (2000 px in a request of more than 20 images, more than ``MAX_IMAGES`` allows).
_PROVIDER_IMAGE_SIDE = {"anthropic": 8000}
_URL_SCHEMES = frozenset({"https", "http"})
_CHUNK = 4 * 256 * 1024  # base64 characters checked at a time (a multiple of 4)


class ImageDetail(StrEnum):
    AUTO = "auto"
    LOW = "low"
    HIGH = "high"


class ImagePart(Value, frozen=True, kw_only=True):
    """One image of a user message: ``url`` as sent (an ``https:``/``http:`` URL or a ``data:``
    URL), ``detail`` as sent (``None``: not given). Built by ``image_part``, which checks it."""

    url: str
    detail: ImageDetail | None = None

    @property
    def is_data(self) -> bool:
        return self.url[:5].lower() == "data:"

    @property
    def media_type(self) -> str | None:
        """A data URL's media type, in lower case; ``None`` for a URL."""
        if not self.is_data:
            return None
        header = self.url[5 : self.url.index(",")]
        return header.split(";", 1)[0].strip().lower()

    @property
    def data(self) -> str | None:
        """A data URL's base64 data; ``None`` for a URL."""
        return self.url[self.url.index(",") + 1 :] if self.is_data else None


def max_image_bytes(provider: str) -> int:
    """The largest image (decoded bytes) ``provider`` takes in a ``data:`` URL."""
    return _PROVIDER_IMAGE_BYTES.get(provider, MAX_IMAGE_BYTES)


def image_media_types(provider: str) -> frozenset[str]:
    """The media types of the images ``provider`` takes."""
    return _PROVIDER_IMAGE_TYPES.get(provider, IMAGE_MEDIA_TYPES)


def max_image_side(provider: str) -> int | None:
    """The most pixels on a side of an image ``provider`` takes (``None``: no limit known)."""
    return _PROVIDER_IMAGE_SIDE.get(provider)


def provider_refusal(part: ImagePart, provider: str) -> str | None:
    """Why ``provider`` would refuse the ``data:`` URL image ``part`` for its media type or its
    size in pixels (``None``: it takes it, as far as can be told; a URL is fetched by the
    provider and not judged here). Only the image's header is decoded."""
    media_type = part.media_type
    if media_type is None:
        return None
    if media_type not in image_media_types(provider):
        allowed = ", ".join(sorted(image_media_types(provider)))
        return f"its media type is {media_type}; {provider} takes {allowed}"
    side = max_image_side(provider)
    size = data_url_size(part.data or "") if side is not None else None
    if side is not None and size is not None and max(size) > side:
        return f"it is {size[0]}x{size[1]} pixels; {provider} takes at most {side} a side"
    return None


def data_image(media_type: str, data: bytes) -> ImagePart:
    """An image the server holds (an attached file), as a ``data:`` URL part."""
    return ImagePart(
        url=f"data:{media_type};base64,{binascii.b2a_base64(data, newline=False).decode()}"
    )


def image_part(url: object, detail: object, *, field: str) -> ImagePart:
    """An image part as a client sent it; ``field`` names its ``image_url`` object. Raises
    ``InvalidInput`` (see the module docstring). Error messages never repeat the data."""
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{field}.url is required (a URL or a data URL).", field=f"{field}.url")
    if detail is not None and (not isinstance(detail, str) or detail not in set(ImageDetail)):
        raise InvalidInput(
            f"{field}.detail must be one of 'auto', 'low', 'high'.", field=f"{field}.detail"
        )
    if url[:5].lower() == "data:":
        _check_data_url(url, f"{field}.url")
    else:
        _check_url(url, f"{field}.url")
    return ImagePart(url=url, detail=None if detail is None else ImageDetail(str(detail)))


def _check_url(url: str, field: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in _URL_SCHEMES:
        scheme = url.split(":", 1)[0][:20] if ":" in url else ""
        raise InvalidInput(
            f"{field} must be an https: or http: URL or a data: URL"
            + (f" ({scheme + ':'!r} given)." if scheme else "."),
            field=field,
        )
    if not parts.hostname or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidInput(f"{field} is not a valid URL (a host, no spaces).", field=field)


def _check_data_url(url: str, field: str) -> None:
    header, comma, data = url[5:].partition(",")
    params = [p.strip().lower() for p in header.split(";")]
    if not comma or len(params) < 2 or params[-1] != "base64":
        raise InvalidInput(
            f"{field} must be a base64 data URL (data:image/png;base64,...).", field=field
        )
    if params[0] not in IMAGE_MEDIA_TYPES:
        allowed = ", ".join(sorted(IMAGE_MEDIA_TYPES))
        raise InvalidInput(
            f"{field} has media type {params[0][:40]!r}; images are {allowed}.", field=field
        )
    padding = len(data) - len(data.rstrip("="))
    size = len(data) // 4 * 3 - padding
    if size > MAX_IMAGE_BYTES:
        raise InvalidInput(
            f"{field} holds an image of {size} bytes; at most {MAX_IMAGE_BYTES} bytes.",
            field=field,
            limit=MAX_IMAGE_BYTES,
        )
    if not data or len(data) % 4 or not _is_base64(data):
        raise InvalidInput(f"{field} does not hold valid base64 data.", field=field)


def _is_base64(data: str) -> bool:
    # In pieces: checking never holds a second copy of a large image
    if not data.isascii():
        return False
    try:
        for start in range(0, len(data), _CHUNK):
            binascii.a2b_base64(data[start : start + _CHUNK], strict_mode=True)
    except binascii.Error:
        return False
    return True


def check_images(messages: Sequence[PromptMessage]) -> None:
    """Images only in user messages, at most ``MAX_IMAGES`` of them (else ``InvalidInput``
    naming the image: ``messages[i].content[j]``)."""
    count = 0
    for index, message in enumerate(messages):
        for number, part in enumerate(message.parts):
            if not isinstance(part, ImagePart):
                continue
            field = f"messages[{index}].content[{number}]"
            if message.role != "user":
                raise InvalidInput(
                    f"{field}: images are only read in user messages (not {message.role}).",
                    field=field,
                )
            count += 1
            if count > MAX_IMAGES:
                raise InvalidInput(
                    f"{field}: a request holds at most {MAX_IMAGES} images.",
                    field=field,
                    limit=MAX_IMAGES,
                )


def first_image(messages: Sequence[PromptMessage]) -> str | None:
    """The field of the first image of ``messages`` (``messages[i].content[j]``), if any."""
    for index, message in enumerate(messages):
        for number, part in enumerate(message.parts):
            if isinstance(part, ImagePart):
                return f"messages[{index}].content[{number}]"
    return None
