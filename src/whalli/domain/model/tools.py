"""Tool (function) calling: the tools a caller offers a model, how it may use them, its calls.

Only the OpenAI-compatible API (``/v1``) offers tools: the chat flow never does. Field names in
errors are that API's (``tools[2].function.name``, ``tool_choice``).

Rules (OpenAI's, which every provider accepts):
- at most ``MAX_TOOLS`` tools, at least one (no tools is ``None``, not an empty set);
- a function name is 1 to 64 letters, digits, ``_`` or ``-``, and names are unique;
- a ``tool_choice`` naming a function names one of the tools.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidInput

MAX_TOOLS = 128
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class ToolChoiceMode(StrEnum):
    NONE = "none"  # answer in text, call nothing
    AUTO = "auto"  # the model decides
    REQUIRED = "required"  # call at least one tool
    FUNCTION = "function"  # call the function named


class ToolChoice(Value, frozen=True, kw_only=True):
    mode: ToolChoiceMode
    name: str | None = None  # with FUNCTION only


class ToolSpec(Value, frozen=True, kw_only=True):
    """One function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tools(Value, frozen=True, kw_only=True):
    """The tools of one request. ``choice`` and ``parallel`` ``None``: the provider's default
    (``auto``, parallel calls allowed)."""

    specs: tuple[ToolSpec, ...]
    choice: ToolChoice | None = None
    parallel: bool | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.specs) <= MAX_TOOLS:
            raise InvalidInput(
                f"tools takes 1 to {MAX_TOOLS} tools ({len(self.specs)} given).",
                field="tools",
                limit=MAX_TOOLS,
            )
        seen: set[str] = set()
        for index, spec in enumerate(self.specs):
            field = f"tools[{index}].function.name"
            if not FUNCTION_NAME.fullmatch(spec.name):
                raise InvalidInput(
                    f"{field} must be 1 to 64 letters, digits, underscores or dashes "
                    f"({spec.name[:80]!r} given).",
                    field=field,
                )
            if spec.name in seen:
                raise InvalidInput(f"{field}: the name {spec.name!r} is given twice.", field=field)
            seen.add(spec.name)
        choice = self.choice
        if (
            choice is not None
            and choice.mode is ToolChoiceMode.FUNCTION
            and choice.name not in seen
        ):
            raise InvalidInput(
                f"tool_choice names the function {choice.name!r}, which is not in tools.",
                field="tool_choice",
            )


class ToolCall(Value, frozen=True, kw_only=True):
    """A call the model made: ``arguments`` is the JSON text it wrote (not checked: a model
    may write invalid JSON, which the caller is told as it is)."""

    id: str
    name: str
    arguments: str


class ToolCallAssembly:
    """Tool calls put back together from their streamed pieces (the first piece of a call has
    its id and name, the next ones pieces of its arguments), in the order of their index."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: dict[int, tuple[str, str, list[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, index: int, id: str | None, name: str | None, arguments: str) -> None:
        known = self._parts.get(index)
        if known is None:
            self._parts[index] = (id or "", name or "", [arguments] if arguments else [])
            return
        if id or name:  # a provider repeating them later: the first ones stand unless missing
            self._parts[index] = (known[0] or id or "", known[1] or name or "", known[2])
        if arguments:
            known[2].append(arguments)

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=id, name=name, arguments="".join(arguments))
            for _, (id, name, arguments) in sorted(self._parts.items())
        )

    def text(self) -> str:
        """Everything the model wrote for its calls (to estimate its tokens)."""
        return "".join(name + "".join(args) for _, (_, name, args) in sorted(self._parts.items()))
