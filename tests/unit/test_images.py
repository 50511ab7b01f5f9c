"""Images in a prompt (vision): the rules of an image part, of the images of a request, the
catalog's ``vision``, the token estimate, the cache key and the provider request bodies."""

from __future__ import annotations

import base64

import pytest

from whalli.adapters.ai.anthropic_request import messages_body
from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chats import GenerationParams, MessageRole, PromptMessage
from whalli.domain.model.errors import InvalidCatalog, InvalidInput
from whalli.domain.model.images import (
    IMAGE_TOKENS,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    ImageDetail,
    ImagePart,
    check_images,
    first_image,
    image_media_types,
    image_part,
    max_image_side,
    provider_refusal,
)
from whalli.domain.model.prompt_cache import cache_key
from whalli.domain.model.users import Plan
from whalli.domain.services.chat.context import estimate_message_tokens
from whalli.ports.chat_model import CompletionRequest

FIELD = "messages[3].content[1].image_url"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
DATA_URL = f"data:image/png;base64,{PNG}"
HTTPS = "https://example.com/cat.png"


def image(url: str = HTTPS, detail: object = None) -> ImagePart:
    return image_part(url, detail, field=FIELD)


def with_images(*parts: str | ImagePart, role: MessageRole = MessageRole.USER) -> PromptMessage:
    text = "".join(p for p in parts if isinstance(p, str))
    return PromptMessage(role=role, content=text, parts=parts)


# --- one image part -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "detail"),
    [
        (HTTPS, None),
        ("http://example.com/a.jpg?size=large#x", "low"),
        ("HTTPS://EXAMPLE.COM/A.PNG", "high"),
        (DATA_URL, "auto"),
        (f"data:image/jpeg;base64,{PNG}", None),
        (f"DATA:Image/WebP;BASE64,{PNG}", None),
        (f"data:image/gif;name=a.gif;base64,{PNG}", None),
    ],
)
def test_urls_and_data_urls_of_images_are_taken_as_sent(url: str, detail: str | None) -> None:
    part = image(url, detail)

    assert part.url == url
    assert part.detail == (None if detail is None else ImageDetail(detail))


def test_a_data_urls_media_type_and_data_are_read_from_it() -> None:
    part = image(f"data:Image/PNG;base64,{PNG}")

    assert (part.is_data, part.media_type, part.data) == (True, "image/png", PNG)
    assert (image().is_data, image().media_type, image().data) == (False, None, None)


BAD_URLS = {
    "file": ("file:///etc/passwd", "https: or http: URL"),
    "ftp": ("ftp://example.com/a.png", "'ftp:' given"),
    "javascript": ("javascript:alert(1)", "https: or http: URL"),
    "no_scheme": ("example.com/a.png", "https: or http: URL"),
    "no_host": ("https:///a.png", "not a valid URL"),
    "a_space": ("https://example.com/a b.png", "not a valid URL"),
    "not_base64_encoded": ("data:image/png,rawbytes", "base64 data URL"),
    "no_comma": ("data:image/png;base64", "base64 data URL"),
    "svg": (f"data:image/svg+xml;base64,{PNG}", r"media type 'image/svg\+xml'"),
    "pdf": (f"data:application/pdf;base64,{PNG}", "media type 'application/pdf'"),
    "bad_alphabet": ("data:image/png;base64,ab$d", "valid base64"),
    "bad_length": ("data:image/png;base64,abcde", "valid base64"),
    "bad_padding": ("data:image/png;base64,a===", "valid base64"),
    "whitespace": (f"data:image/png;base64,{PNG[:8]}\n{PNG[8:]}", "valid base64"),
    "non_ascii": ("data:image/png;base64,ééé=", "valid base64"),
    "empty_data": ("data:image/png;base64,", "valid base64"),
    "empty": ("", "is required"),
}


@pytest.mark.parametrize(("url", "says"), list(BAD_URLS.values()), ids=list(BAD_URLS))
def test_a_bad_url_is_refused_naming_the_field(url: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as raised:
        image(url)

    assert raised.value.details["field"] == f"{FIELD}.url"


@pytest.mark.parametrize("url", [None, 5, {"url": HTTPS}])
def test_a_url_that_is_not_a_string_is_refused(url: object) -> None:
    with pytest.raises(InvalidInput, match="is required") as raised:
        image_part(url, None, field=FIELD)

    assert raised.value.details["field"] == f"{FIELD}.url"


@pytest.mark.parametrize("detail", ["medium", "AUTO", 1, "", {"level": "high"}, ["low"]])
def test_a_detail_other_than_auto_low_high_is_refused(detail: object) -> None:
    with pytest.raises(InvalidInput, match="'auto', 'low', 'high'") as raised:
        image(HTTPS, detail)

    assert raised.value.details["field"] == f"{FIELD}.detail"


def test_a_data_url_of_more_than_20_mb_is_refused_without_repeating_it() -> None:
    data = "A" * ((MAX_IMAGE_BYTES // 3 + 1) * 4)  # just over the limit, decoded
    at_limit = "A" * (MAX_IMAGE_BYTES // 3 * 4)

    with pytest.raises(InvalidInput, match=f"at most {MAX_IMAGE_BYTES} bytes") as raised:
        image(f"data:image/png;base64,{data}")

    assert raised.value.details == {"field": f"{FIELD}.url", "limit": MAX_IMAGE_BYTES}
    assert "AAAA" not in raised.value.message
    assert image(f"data:image/png;base64,{at_limit}").data == at_limit


def test_a_bad_character_far_into_a_large_data_url_is_found() -> None:
    data = "A" * (3 * 1024 * 1024) + "A*A="

    with pytest.raises(InvalidInput, match="valid base64"):
        image(f"data:image/png;base64,{data}")


# --- the images of a request ------------------------------------------------------------------
def test_images_are_only_read_in_user_messages() -> None:
    for role in (MessageRole.SYSTEM, MessageRole.ASSISTANT, MessageRole.TOOL):
        messages = [with_images("Hi"), with_images("look", image(), role=role)]

        with pytest.raises(InvalidInput, match=f"only read in user messages .not {role}") as e:
            check_images(messages)

        assert e.value.details["field"] == "messages[1].content[1]"


def test_a_request_holds_at_most_20_images() -> None:
    twenty = [with_images(*([image()] * 10)), with_images("and", *([image()] * 10))]
    check_images(twenty)

    with pytest.raises(InvalidInput, match=f"at most {MAX_IMAGES} images") as raised:
        check_images([*twenty, with_images("one more", image())])

    assert raised.value.details["field"] == "messages[2].content[1]"


def test_the_first_image_is_named_by_its_message_and_part() -> None:
    plain = PromptMessage(role=MessageRole.USER, content="Hi")

    assert first_image([plain]) is None
    assert first_image([plain, with_images("a", "b", image(), image())]) == "messages[1].content[2]"


# --- the catalog, the estimate, the key, the bodies -------------------------------------------
def test_the_shipped_catalog_says_which_models_read_images() -> None:
    catalog = load_catalog(default_catalog_path())

    seeing = {spec.id for spec in catalog if spec.sees_images}

    assert {"openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"} <= seeing
    assert "dev/echo" not in seeing
    assert not catalog.get("dev/echo").vision


def test_a_dev_model_cannot_be_said_to_read_images() -> None:
    spec = ModelSpec(
        id="dev/eyes", provider="dev", upstream="eyes", min_plan=Plan.FREE,
        input_usd_per_mtok=0, output_usd_per_mtok=0, context_window=100, vision=True,
    )  # fmt: skip

    with pytest.raises(InvalidCatalog, match="cannot send images"):
        ModelCatalog([spec])


def test_each_image_counts_a_fixed_estimate() -> None:
    text = PromptMessage(role=MessageRole.USER, content="look at these")

    two = with_images("look at these", image(), image(DATA_URL))

    assert estimate_message_tokens(two) == estimate_message_tokens(text) + 2 * IMAGE_TOKENS


def key(*messages: PromptMessage) -> str:
    return cache_key(model_id="m", messages=messages, params=GenerationParams())


def test_the_image_its_detail_and_the_parts_order_are_part_of_the_key() -> None:
    text = PromptMessage(role=MessageRole.USER, content="What is it?")
    other_png = base64.b64encode(b"another image").decode()

    keys = {
        key(text),
        key(with_images("What is it?", image())),
        key(with_images("What is it?", image("https://example.com/dog.png"))),
        key(with_images("What is it?", image(HTTPS, "low"))),
        key(with_images("What is it?", image(HTTPS, "high"))),
        key(with_images(image(), "What is it?")),
        key(with_images("What is it?", image(DATA_URL))),
        key(with_images("What is it?", image(f"data:image/png;base64,{other_png}"))),
    }

    assert len(keys) == 8
    assert key(with_images("What is it?", image())) == key(with_images("What is it?", image()))


def test_claude_gets_image_blocks_in_order_with_the_text() -> None:
    prompt = (
        PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
        with_images("Compare ", image(DATA_URL, "high"), " ", image(HTTPS), "please"),
    )

    body = messages_body(CompletionRequest(model="claude", messages=prompt), default_max_tokens=100)

    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": HTTPS}},
                {"type": "text", "text": "please"},
            ],
        }
    ]  # fmt: skip
    assert body["system"] == "Be brief."


def _png_url(width: int, height: int, media_type: str = "image/png") -> ImagePart:
    ihdr = (13).to_bytes(4) + b"IHDR" + width.to_bytes(4) + height.to_bytes(4) + bytes(9)
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + ihdr + bytes(30)).decode()
    return ImagePart(url=f"data:{media_type};base64,{data}")


def test_each_provider_takes_its_own_image_types_and_sizes() -> None:
    assert image_media_types("xai") == {"image/png", "image/jpeg"}
    assert image_media_types("openai") == image_media_types("anthropic") == {
        "image/png", "image/jpeg", "image/gif", "image/webp",
    }  # fmt: skip
    assert (max_image_side("anthropic"), max_image_side("openai")) == (8000, None)


def test_a_provider_refuses_an_image_of_a_type_or_a_size_it_does_not_take() -> None:
    gif = _png_url(10, 10, "image/gif")
    huge = _png_url(9000, 9000)
    assert provider_refusal(gif, "xai") == (
        "its media type is image/gif; xai takes image/jpeg, image/png"
    )
    assert provider_refusal(gif, "openai") is None
    assert provider_refusal(huge, "anthropic") == (
        "it is 9000x9000 pixels; anthropic takes at most 8000 a side"
    )
    assert provider_refusal(huge, "openai") is None
    assert provider_refusal(_png_url(8000, 10), "anthropic") is None
    assert provider_refusal(ImagePart(url=DATA_URL), "anthropic") is None  # size unknown
    assert provider_refusal(ImagePart(url=HTTPS), "xai") is None  # fetched by the provider
