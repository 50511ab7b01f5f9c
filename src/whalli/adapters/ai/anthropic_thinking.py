"""Anthropic's extended thinking: a reasoning effort as the Messages API asks for it.

Rules (``ReasoningEffort`` -> the request body):
- ``thinking: {"type": "enabled", "budget_tokens": B}``, ``B`` from the catalog's
  ``THINKING_BUDGETS`` (the API takes 1,024 at least; the chat's context keeps it free);
- ``max_tokens`` counts the thinking too, so it becomes ``B`` plus what the reply may use (the
  caller's ``max_tokens``, else the adapter's default): the answer keeps the room asked for,
  as far as the model's output cap (``max_output_tokens``) allows: ``max_tokens`` is then the
  cap, and ``B`` at most half of it (the answer keeps the rest);
- the API refuses ``temperature`` and most ``top_p`` values with thinking: they are left out;
- it refuses thinking while a tool call is forced (``tool_choice`` ``any`` or ``tool``: a
  ``response_format``, ``required`` or a named function): ``InvalidInput`` naming
  ``reasoning_effort``, before the API is called;
- with thinking on, it wants the last assistant turn of a tool loop to start with that turn's
  signed thinking block, which an OpenAI-shaped client never has (``/v1`` sends the calls and
  results only): a request whose last assistant turn made tool calls is sent without
  thinking, as Anthropic's own error advises, so the loop goes on; so is one that ends with
  an assistant turn (a prefill, which would have to start with a thinking block);
- a model that thinks adaptively (the catalog's ``adaptive_thinking``: Claude Opus and Sonnet
  4.6 and later, where a budget is deprecated or refused) is asked ``thinking: {"type":
  "adaptive"}`` with the effort as ``output_config.effort`` (``ADAPTIVE_EFFORTS``; beside the
  format a request may have there): it decides how much to think; ``max_tokens`` leaves it the
  room the budget of the effort sent would (minimal is sent as low, and has low's room). Sent
  without thinking (above), it keeps the effort, which governs its text and tool calls too.
The thinking streams back as ``thinking`` blocks (``anthropic`` reads them).
"""

from __future__ import annotations

from typing import Any

from whalli.domain.model.catalog import THINKING_BUDGETS
from whalli.domain.model.chats import MessageRole, PromptMessage, ReasoningEffort
from whalli.domain.model.errors import InvalidInput

MIN_BUDGET = 1_024  # the least budget the API takes
# Anthropic's efforts are low, medium, high (its default) and max: minimal asks for its least.
ADAPTIVE_EFFORTS = {
    ReasoningEffort.MINIMAL: "low",
    ReasoningEffort.LOW: "low",
    ReasoningEffort.MEDIUM: "medium",
    ReasoningEffort.HIGH: "high",
}
_FORCED = frozenset({"any", "tool"})


def prefilled(messages: tuple[PromptMessage, ...]) -> bool:
    """Whether the conversation ends with an assistant turn that calls no tool: the start of
    the reply, given (a prefill), which Claude continues."""
    last = next((m for m in reversed(messages) if m.role is not MessageRole.SYSTEM), None)
    return last is not None and last.role is MessageRole.ASSISTANT and not last.tool_calls


def with_thinking(
    body: dict[str, Any],
    effort: ReasoningEffort,
    messages: tuple[PromptMessage, ...],
    cap: int | None = None,
    *,
    adaptive: bool = False,
) -> dict[str, Any]:
    """``body`` (the request of ``messages``, without thinking) asking for ``effort``, for a
    model writing at most ``cap`` tokens (``None``: not known), ``adaptive`` or with a budget
    (see the rules)."""
    last_reply = next((m for m in reversed(messages) if m.role is MessageRole.ASSISTANT), None)
    if (last_reply is not None and last_reply.tool_calls) or prefilled(messages):
        # a tool loop going on (its thinking cannot be sent back), or the reply's start given
        # (a prefill, which would have to start with a thinking block): no thinking, but an
        # adaptive model keeps the effort, which governs its text and calls too
        return _with_effort(body, effort) if adaptive else body
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in _FORCED:
        raise InvalidInput(
            "Anthropic models cannot think (reasoning_effort) while a tool call is forced: a "
            "response_format, tool_choice required or a named function.",
            field="reasoning_effort",
        )
    # an adaptive model asked minimal is asked Anthropic's low: it gets low's room
    sent = ReasoningEffort.LOW if adaptive and effort is ReasoningEffort.MINIMAL else effort
    budget = THINKING_BUDGETS[sent]
    total = budget + body["max_tokens"]
    if cap is not None and total > cap:
        total, budget = cap, max(MIN_BUDGET, min(budget, cap // 2))
    thinking = {key: value for key, value in body.items() if key not in ("temperature", "top_p")}
    thinking["max_tokens"] = total
    if adaptive:
        return _with_effort(thinking, effort) | {"thinking": {"type": "adaptive"}}
    thinking["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return thinking


def _with_effort(body: dict[str, Any], effort: ReasoningEffort) -> dict[str, Any]:
    """``body`` asking Anthropic's effort for ``effort``, beside what ``output_config`` holds."""
    config = {**body.get("output_config", {}), "effort": ADAPTIVE_EFFORTS[effort]}
    return body | {"output_config": config}
