"""A loopback Anthropic whose prompt cache works as the real one's does (Anthropic's prompt
caching documentation), so that what Whalli asks of it and what it is billed can be checked:

- the prompt is read as a sequence of blocks, in the API's order: the tools, the system
  prompt's blocks, then each turn's content blocks (a string is one text block);
- a block marked ``cache_control`` is a breakpoint: the prefix ending there is written to the
  cache when it is at least ``MIN_CACHEABLE`` tokens long (shorter ones are simply not cached);
- a request reads the longest cached prefix ending at one of its breakpoints or at one of the
  ``LOOKBACK`` block boundaries before each of them;
- the usage splits the prompt as the API does: ``cache_read_input_tokens`` (the prefix read),
  ``cache_creation_input_tokens`` (what was written beyond it) and ``input_tokens`` (the rest),
  and the writes by how long they are kept (``cache_creation``'s ``ephemeral_5m_input_tokens``
  and ``ephemeral_1h_input_tokens``: here all to the ``ttl`` of the breakpoint whose prefix
  was written, exact when a request's breakpoints share one);
- it refuses what the API refuses: more than four breakpoints, a kind other than
  ``ephemeral``, a ``ttl`` other than ``5m`` or ``1h``, a 1-hour breakpoint after a 5-minute
  one, a breakpoint on an empty text block.

A block's tokens are its JSON's length in characters divided by 4 (at least 1): not Claude's
tokenizer, but the same for the same block, which is all the cache's arithmetic needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_providers import (
    RecordedRequest,
    Reply,
    anthropic_default,
    anthropic_error,
)

MIN_CACHEABLE = 1024  # Claude Sonnet 4's shortest prompt prefix that is cached, in tokens
LOOKBACK = 20  # block boundaries checked for a hit before each breakpoint
MAX_BREAKPOINTS = 4


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cache_creation_1h_input_tokens: int = 0  # of the writes, those kept an hour

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass
class PromptCacheAnthropic:
    """The server's answer to each request (``FakeProviderServer``'s default): checked as the
    real API checks it, then answered as ``anthropic_default`` answers, with the cache's usage.
    ``usages`` holds each answered request's usage, in order."""

    output_tokens: int = 4
    entries: set[str] = field(default_factory=set)
    usages: list[CacheUsage] = field(default_factory=list)

    def __call__(self, request: RecordedRequest) -> Reply:
        refused = refused_breakpoints(request.body)
        if refused is not None:
            return Reply(status=400, body=anthropic_error("invalid_request_error", refused))
        answer = anthropic_default()(request)
        if answer.status != 200 or answer.chunks is None:
            return answer
        usage = self._use(request.body)
        self.usages.append(usage)
        chunks = list(answer.chunks)
        start = json.loads(chunks[0].decode().split("data: ", 1)[1])
        start["message"]["usage"] = {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage.cache_creation_input_tokens
                - usage.cache_creation_1h_input_tokens,
                "ephemeral_1h_input_tokens": usage.cache_creation_1h_input_tokens,
            },
            "output_tokens": 1,
        }
        chunks[0] = f"event: message_start\ndata: {json.dumps(start)}\n\n".encode()
        return Reply(chunks=chunks)

    def _use(self, body: dict[str, Any]) -> CacheUsage:
        blocks = _blocks(body)
        hashes, lengths = [], []
        digest, total = hashlib.sha256(), 0
        for block in blocks:
            plain = {key: value for key, value in block.items() if key != "cache_control"}
            digest.update(json.dumps(plain, sort_keys=True).encode())
            total += max(1, len(json.dumps(plain)) // 4)
            hashes.append(digest.copy().hexdigest())
            lengths.append(total)
        marks = [n for n, block in enumerate(blocks) if "cache_control" in block]
        read = 0
        for mark in marks:
            for n in range(mark, max(mark - LOOKBACK, -1), -1):
                if hashes[n] in self.entries:
                    read = max(read, lengths[n])
                    break
        written, hour = read, False
        for mark in marks:
            if lengths[mark] >= MIN_CACHEABLE and hashes[mark] not in self.entries:
                self.entries.add(hashes[mark])
                if lengths[mark] > written:
                    written, hour = lengths[mark], blocks[mark]["cache_control"].get("ttl") == "1h"
        return CacheUsage(
            input_tokens=total - written,
            cache_creation_input_tokens=written - read,
            cache_read_input_tokens=read,
            cache_creation_1h_input_tokens=written - read if hour else 0,
        )


def _blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt's blocks in the API's order: tools, system, messages."""
    blocks = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, str):
        blocks.append({"type": "text", "text": system})
    elif isinstance(system, list):
        blocks += system
    for turn in body.get("messages") or []:
        content = turn["content"]
        blocks += [{"type": "text", "text": content}] if isinstance(content, str) else content
    return blocks


def refused_breakpoints(body: dict[str, Any]) -> str | None:
    """The API's error message for a request it refuses for its breakpoints, if any."""
    marks = []
    for n, turn in enumerate(body.get("messages") or []):
        content = turn["content"]
        for m, block in enumerate(content if isinstance(content, list) else []):
            marks.append((f"messages.{n}.content.{m}", block))
    system = body.get("system")
    for m, block in enumerate(system if isinstance(system, list) else []):
        marks.append((f"system.{m}", block))
    marks += [(f"tools.{n}", tool) for n, tool in enumerate(body.get("tools") or [])]
    marked = [(where, block) for where, block in marks if "cache_control" in block]
    if len(marked) > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marked)}."
        )
    for where, block in marked:
        control = block["cache_control"]
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            return f"{where}.cache_control.type: Input should be 'ephemeral'"
        if control.get("ttl", "5m") not in ("5m", "1h"):
            return f"{where}.cache_control.ttl: Input should be '5m' or '1h'"
        if block.get("type") == "text" and not block.get("text"):
            return f"{where}.text: cache_control cannot be set for empty text blocks"
    for where, block in marks:
        if block.get("type") == "text" and not str(block.get("text", "")).strip():
            return f"{where}: text content blocks must contain non-whitespace text"
    ttls = [b["cache_control"].get("ttl", "5m") for b in _blocks(body) if "cache_control" in b]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        return (
            "A cache_control entry with ttl='1h' must not come after one with ttl='5m' "
            "(tools, then system, then messages)."
        )
    return None


def unmarked(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as without the prompt cache's breakpoints: their marks taken off, and a
    system prompt or a turn's content that was marked as one text block given back as the
    string it was (for tests of other parts of a request's shape)."""

    def plain(content: Any) -> Any:
        if not isinstance(content, list):
            return content
        blocks = [{k: v for k, v in block.items() if k != "cache_control"} for block in content]
        marked = any("cache_control" in block for block in content)
        if marked and len(blocks) == 1 and blocks[0].get("type") == "text":
            return blocks[0]["text"]
        return blocks

    result = dict(body)
    if "system" in body:
        result["system"] = plain(body["system"])
    result["messages"] = [{**turn, "content": plain(turn["content"])} for turn in body["messages"]]
    return result
