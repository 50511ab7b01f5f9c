"""What of a provider's error body reaches our messages: the provider's explanation of a request
it refused as invalid (sanitised), never what a 401, 403 or 5xx says; and how such a refusal
is answered (the caller's 400, not a bad gateway)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from whalli.adapters.ai._http import status_error, stream_error
from whalli.adapters.ai._upstream_errors import MAX_MESSAGE, sanitised, upstream_message
from whalli.domain.model.errors import ProviderError, ProviderRateLimited, ProviderRejectedRequest
from whalli.entrypoints.http.openai_errors import error_body
from whalli.entrypoints.http.problems import status_for

CONTEXT = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted "
    "in 130512 tokens. Please reduce the length of the messages."
)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ({"error": {"message": CONTEXT, "type": "invalid_request_error",
                    "param": "messages", "code": "context_length_exceeded"}}, CONTEXT),
        ({"type": "error", "error": {"type": "invalid_request_error",
                                     "message": "prompt is too long: 210000 tokens > 200000"}},
         "prompt is too long: 210000 tokens > 200000"),
        ({"error": "model requires more system memory"}, "model requires more system memory"),
        ({"object": "error", "message": "max_tokens must be at least 1", "type": "BadRequest",
          "code": 400}, "max_tokens must be at least 1"),
        ({"error": {"code": 400, "message": "the request exceeds the available context size",
                    "type": "exceed_context_size_error"}},
         "the request exceeds the available context size"),
    ],
    ids=["openai", "anthropic", "bare-error-ollama", "message-vllm", "llama-cpp"],
)  # fmt: skip
def test_the_providers_message_is_read_from_each_body_shape(document: Any, said: str) -> None:
    assert upstream_message(body(document)) == said
    assert upstream_message(document) == said  # a stream's error chunk, already decoded


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>Bad request</html>",
        b"",
        body({"error": {"code": "invalid_value"}}),
        body({"error": {"message": 42}}),
        body(["error"]),
        body({"detail": "no"}),
    ],
)
def test_a_body_without_a_message_gives_none(raw: bytes) -> None:
    assert upstream_message(raw) == ""


def test_control_characters_become_spaces_and_whitespace_collapses() -> None:
    said = "bad\x00 value\r\n\tfor \x1b[31mtemperature\x1b[0m\u202e \u2028 (max 2)\x7f"

    assert sanitised(said) == "bad value for [31mtemperature [0m (max 2)"


def test_a_long_message_is_capped_with_an_ellipsis() -> None:
    long = "word " * 400

    capped = upstream_message(body({"error": {"message": long}}))

    assert len(capped) == MAX_MESSAGE
    assert capped.endswith("…")
    assert capped.startswith("word word")
    assert upstream_message(body({"error": {"message": "x" * MAX_MESSAGE}})) == "x" * MAX_MESSAGE


def test_anything_shaped_like_a_key_or_token_is_redacted() -> None:
    said = (
        "Invalid key sk-proj-AbC123def456 or sk-ant-api03-xyz_987654 or xai-0123456789ab, "
        "header Authorization: Bearer eyJhbGciOi.J9.x, google AIzaSyA1234567890abcdefghijklmnop"
    )

    clean = sanitised(said)

    for secret in ("AbC123def456", "xyz_987654", "0123456789ab", "eyJhbGciOi", "AIzaSy"):
        assert secret not in clean
    assert clean.startswith("Invalid key [redacted] or [redacted] or [redacted], header")
    assert sanitised("a task-specific risk-free setting") == "a task-specific risk-free setting"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_refused_as_invalid_carries_the_providers_explanation(status: int) -> None:
    document = {"error": {"message": CONTEXT, "code": "context_length_exceeded"}}

    error = status_error("openai", status, {}, body(document))

    assert isinstance(error, ProviderRejectedRequest)
    assert error.message == (
        f"The openai provider rejected the request (HTTP {status}: context_length_exceeded): "
        + CONTEXT
    )
    assert error.details["kind"] == "invalid_request"
    assert error.details["upstream_status"] == status
    assert not error.retryable
    assert not error.falls_back
    assert status_for(error) == 400
    detail = error_body(error).error
    assert (detail.type, detail.code, detail.message) == (
        "invalid_request_error",
        "provider_rejected_request",
        error.message,
    )


def test_a_refusal_without_a_message_still_says_its_status() -> None:
    error = status_error("anthropic", 400, {}, b"oops")

    assert error.message == "The anthropic provider rejected the request (HTTP 400)."
    assert isinstance(error, ProviderRejectedRequest)


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 503, 529])
def test_other_statuses_never_echo_the_providers_message_and_stay_a_bad_gateway(
    status: int,
) -> None:
    key = "sk-proj-0123456789abcdef"
    document = {"error": {"message": f"Incorrect API key provided: {key}.", "type": "oops",
                          "code": "invalid_api_key"}}  # fmt: skip

    error = status_error("openai", status, {}, body(document))

    # a rate limit is told apart (a 429 to the caller), any other failure a bad gateway
    assert type(error) is (ProviderRateLimited if status == 429 else ProviderError)
    assert "Incorrect" not in error.message
    assert key not in error.message
    assert key not in repr(error.details)
    assert f"HTTP {status}: invalid_api_key" in error.message
    assert error.details["upstream_status"] == status
    assert error.details["kind"] != "invalid_request"
    limited = status == 429
    assert status_for(error) == (429 if limited else 502)
    assert error_body(error).error.type == ("rate_limit_error" if limited else "server_error")


def test_an_error_mid_stream_carries_the_providers_message() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    chunk = {"error": {"message": "The server had an error\nwhile processing", "type": "x",
                       "code": "server_error"}}  # fmt: skip

    from_anthropic = stream_error("anthropic", overloaded)
    from_openai = stream_error("openai", chunk)
    bare = stream_error("openai", {"error": {}})

    assert from_anthropic.message == (
        "The anthropic provider reported an error mid-stream (overloaded_error): Overloaded"
    )
    assert from_anthropic.retryable
    assert from_openai.message == (
        "The openai provider reported an error mid-stream (server_error): "
        "The server had an error while processing"
    )
    assert bare.message == "The openai provider reported an error mid-stream."
    assert status_for(from_anthropic) == 502


def test_a_lone_surrogate_in_a_message_becomes_a_space_so_it_stays_valid_text() -> None:
    assert sanitised("a\ud83db") == "a b"
    sanitised("x \ude00").encode()  # valid UTF-8: it can be logged and sent
