"""What of a provider's error body may reach our messages (and so the caller and the log).

Rules:
- the error's code or type (``error_code``) when it is a short machine-readable token;
- the provider's human message (``upstream_message``) only where the caller of ``status_error``
  asks for it: for a request the provider refused as invalid (HTTP 400, 413, 422: text about the
  request, which the caller needs to correct it) and for an error reported inside a stream;
  never for a 401 or 403 (OpenAI's echoes part of the API key: "Incorrect API key provided:
  sk-...") nor a 5xx (the provider's internals);
- the message is read from the shapes providers send: OpenAI, xAI and compatible servers'
  ``{"error": {"message"}}``, Anthropic's ``{"type": "error", "error": {"type", "message"}}``,
  Ollama's ``{"error": "text"}``, vLLM's ``{"message"}``; anything else gives none;
- it is sanitised: control and format characters dropped, whitespace collapsed, the keys the
  request was sent with (``secrets``: a self-hosted server's key may have any shape) and
  anything shaped like a key or a bearer token replaced (an upstream that echoes one in a 400
  leaks nothing), at most ``MAX_MESSAGE`` characters (cut with an ellipsis).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

import msgspec

MAX_MESSAGE = 500
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# OpenAI/Anthropic/OpenRouter/xAI/Groq-style keys (sk-..., sk-ant-..., sk-or-..., xai-..., gsk_...),
# Google keys (AIza...), and bearer tokens: what the message says around them is kept.
_SECRET = re.compile(
    r"\b(?:sk|xai|gsk)[-_][A-Za-z0-9_\-]{6,}|\bAIza[A-Za-z0-9_\-]{20,}"
    r"|(?i:\bbearer\s+)[A-Za-z0-9_.~+/=\-]+"
)
_REDACTED = "[redacted]"


def _document(body: object) -> object:
    if not isinstance(body, bytes | str):
        return body
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


def error_code(body: object) -> str:
    """The upstream error's type or code, if it is a short safe token (OpenAI's
    ``{"error": {"code", "type"}}``, Anthropic's ``{"type": "error", "error": {"type"}}``)."""
    document = _document(body)
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return ""
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and _SAFE_CODE.fullmatch(value):
            return value
    return ""


def request_secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The credentials in a request's headers (``Authorization: Bearer``, ``x-api-key``)."""
    found = []
    for name, value in headers.items():
        if name.lower() == "authorization":
            found.append(value.removeprefix("Bearer ").strip())
        elif name.lower() == "x-api-key":
            found.append(value.strip())
    return tuple(s for s in found if s)


def upstream_message(body: object, secrets: Sequence[str] = ()) -> str:
    """The provider's own explanation in an error body (a JSON document, or its bytes),
    sanitised (``secrets`` removed); ``""`` when it has none. See the module docstring for when
    to ask for it."""
    document = _document(body)
    if not isinstance(document, dict):
        return ""
    error = document.get("error")
    if isinstance(error, dict):
        said = error.get("message")
    elif isinstance(error, str):
        said = error
    else:
        said = document.get("message")
    return sanitised(said, secrets) if isinstance(said, str) else ""


def sanitised(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` on one line, without control characters, ``secrets`` or key-shaped words, at
    most ``MAX_MESSAGE`` characters."""
    for secret in secrets:
        if len(secret) >= 4:  # (an empty or trivial one would redact everything)
            text = text.replace(secret, _REDACTED)
    printable = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text
    )
    clean = _SECRET.sub(_REDACTED, " ".join(printable.split()))
    if len(clean) <= MAX_MESSAGE:
        return clean
    return clean[: MAX_MESSAGE - 1].rstrip() + "…"
