"""Anthropic's extended thinking: a reasoning effort as the Messages API asks for it.

Rules (``ReasoningEffort`` -> the request body):
- ``thinking: {"type": "enabled", "budget_tokens": B}``, ``B`` from ``THINKING_BUDGETS`` (the
  API takes 1,024 at least);
- ``max_tokens`` counts the thinking too, so it becomes ``B`` plus what the reply may use (the
  caller's ``max_tokens``, else the adapter's default): the answer keeps the room asked for;
- the API refuses ``temperature`` and most ``top_p`` values with thinking: they are left out;
- it refuses thinking while a tool call is forced (``tool_choice`` ``any`` or ``tool``: a
  ``response_format``, ``required`` or a named function): ``InvalidInput`` naming
  ``reasoning_effort``, before the API is called.
The thinking streams back as ``thinking`` blocks (``anthropic`` reads them).
"""

from __future__ import annotations

from typing import Any

from whalli.domain.model.chats import ReasoningEffort
from whalli.domain.model.errors import InvalidInput

THINKING_BUDGETS = {
    ReasoningEffort.MINIMAL: 1_024,
    ReasoningEffort.LOW: 2_048,
    ReasoningEffort.MEDIUM: 8_192,
    ReasoningEffort.HIGH: 24_576,
}
_FORCED = frozenset({"any", "tool"})


def with_thinking(body: dict[str, Any], effort: ReasoningEffort) -> dict[str, Any]:
    """``body`` (a request's, without thinking) asking for ``effort`` (see the rules)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in _FORCED:
        raise InvalidInput(
            "Anthropic models cannot think (reasoning_effort) while a tool call is forced: a "
            "response_format, tool_choice required or a named function.",
            field="reasoning_effort",
        )
    budget = THINKING_BUDGETS[effort]
    thinking = {key: value for key, value in body.items() if key not in ("temperature", "top_p")}
    thinking["thinking"] = {"type": "enabled", "budget_tokens": budget}
    thinking["max_tokens"] = budget + body["max_tokens"]
    return thinking
