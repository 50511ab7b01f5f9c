"""A whole Anthropic Messages answer (a gateway that ignored ``stream: true`` and answered one
``{"type": "message", ...}`` document as ``application/json``) as the events of the stream
that would have said the same, for ``anthropic._Answer`` to read as it reads any stream:

- ``message_start`` with the message's usage but its output count (the prompt's counts);
- per content block: ``content_block_start`` with the block emptied, one delta holding its
  content (``text_delta``, ``thinking_delta``, or the tool's ``input`` encoded as one
  ``input_json_delta``), ``content_block_stop``; a block of another type (``redacted_thinking``,
  types added later) starts and stops as it is;
- ``message_delta`` with the stop reason and the usage, then ``message_stop``.

Any other document (an ``error``) goes as it is, read as such an event would be.
"""

from __future__ import annotations

from typing import Any

import msgspec

from whalli.adapters.ai._http import obj


def message_events(document: dict[str, Any]) -> list[str]:
    """The ``data`` of the events ``document`` (one whole Messages answer) streams as."""
    if document.get("type") != "message":
        return [_encoded(document)]
    usage = obj(document.get("usage"))
    prompt = {k: v for k, v in usage.items() if k != "output_tokens"}  # said as it began
    message = {**document, "content": [], "stop_reason": None, "usage": prompt}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    content = document.get("content")
    for index, block in enumerate(content if isinstance(content, list) else ()):
        events += _block(index, obj(block))
    delta = {"stop_reason": document.get("stop_reason")}
    events.append({"type": "message_delta", "delta": delta, "usage": usage})
    events.append({"type": "message_stop"})
    return [_encoded(event) for event in events]


def _block(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block.get("type")
    start, delta = dict(block), None
    if kind == "text":
        start["text"], delta = "", {"type": "text_delta", "text": block.get("text")}
    elif kind == "thinking":
        start["thinking"] = ""
        delta = {"type": "thinking_delta", "thinking": block.get("thinking")}
    elif kind == "tool_use":
        given = block.get("input")
        start["input"] = {}
        if isinstance(given, dict) and given:
            delta = {"type": "input_json_delta", "partial_json": _encoded(given)}
    events = [{"type": "content_block_start", "index": index, "content_block": start}]
    if delta is not None:
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
    events.append({"type": "content_block_stop", "index": index})
    return events


def _encoded(value: object) -> str:
    return msgspec.json.encode(value).decode()
