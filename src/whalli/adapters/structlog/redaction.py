"""A structlog processor that keeps secrets out of log lines.

Three rules, applied to the whole event (nested dicts and lists included):
- the value of any key that names a secret (password, secret, token, authorization, api key,
  cookie, credentials) becomes ``***``;
- ``scheme://user:pass@`` credentials inside any string (a DSN in an error message, a traceback)
  become ``scheme://***@``; so do secret query parameters (``?api_key=``, ``X-Amz-Signature=``);
- email addresses inside any string keep their domain only (``***@example.com``): a mail
  server's refusal or a queued job's payload in a traceback must not put people's addresses in
  the logs (log lines name accounts by id).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

REDACTED = "***"

# Substrings that mark a secret anywhere in a (snake_cased) key name.
_SECRET_PARTS = (
    "password",
    "passwd",
    "secret",
    "authorization",
    "api_key",
    "apikey",
    "cookie",
    "credential",
    "private_key",
    "signature",
)
# Query parameters that are secrets although their name alone would not say so in a log key.
_SECRET_QUERY_NAMES = frozenset({"key", "sig", "code"})
# "token" only as a whole word: ``access_token`` is a secret, ``max_tokens`` is a count.
_TOKEN_WORD = re.compile(r"(?:^|_)token(?:$|_)")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@:]*:[^\s/@]*@")
_QUERY_PARAM = re.compile(r"([?&])([^=&\s#]+)=([^&\s#\"']*)")
# A mailbox: a local part of the usual characters (not ``/``, ``=``, ``?``, ``&`` or ``:``, so
# a URL or a query around it keeps its shape), then a dotted domain, which stays.
_EMAIL_LOCAL = re.compile(r"[\w.%+-]+@(?=[\w-]+(?:\.[\w-]+)+)")


def is_secret_key(key: str) -> bool:
    name = _CAMEL_BOUNDARY.sub("_", key).lower().replace("-", "_").replace(".", "_")
    return any(part in name for part in _SECRET_PARTS) or _TOKEN_WORD.search(name) is not None


def _redact_query_param(match: re.Match[str]) -> str:
    sep, name, _ = match.groups()
    if name.lower() in _SECRET_QUERY_NAMES or is_secret_key(name):
        return f"{sep}{name}={REDACTED}"
    return match.group(0)


def redact_text(text: str) -> str:
    if "://" in text:  # the common case costs a substring test or two
        text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY_PARAM.sub(_redact_query_param, text)
    if "@" in text:
        text = _EMAIL_LOCAL.sub(f"{REDACTED}@", text)
    return text


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: run last before rendering so exception text is covered too."""
    for key, value in event_dict.items():
        if is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple):
            event_dict[key] = redact_value(value)
    return event_dict
