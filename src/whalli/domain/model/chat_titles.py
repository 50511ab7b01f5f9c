"""Automatic chat titles: which model writes them, what it is asked, how its answer is cleaned.

A new chat first takes its title from its first message (``title_from``); once its first reply
is complete, a background job asks a model for a short title and sets it, unless the user
renamed the chat meanwhile (its title is no longer the one its first message gave it).
"""

from __future__ import annotations

import re
import unicodedata

from whalli.domain.model.base import Value
from whalli.domain.model.chats import (
    TITLE_MAX,
    GenerationParams,
    MessageRole,
    PromptMessage,
)

# ``WHALLI_CHAT_TITLES``: "model" (the model that wrote the first reply), "off", or a model id.
TITLES_BY_REPLY_MODEL = "model"
TITLES_OFF = "off"
# The dev model only echoes: it never titles, and a chat it answered keeps its first-message title.
NEVER_TITLING_PROVIDERS = frozenset({"dev"})

INSTRUCTION = (
    "Write a title of at most 6 words for this conversation. "
    "Answer with the title only: no quotes, no punctuation at the end."
)
EXCERPT_CHARS = 2_000  # of the first message and of the first reply, each
TITLE_PARAMS = GenerationParams(temperature=0.2, max_tokens=24)
# A reasoning model (``ModelSpec.reasoning`` or ``always_reasons``): OpenAI's refuse a
# temperature (left out for them anyway: ``ModelSpec.refuses``), and their hidden
# reasoning counts in the token allowance, which 24 would not cover: no temperature, and room
# for the reasoning (a title stops well before it: only what is used is paid).
REASONING_TITLE_PARAMS = GenerationParams(max_tokens=2_048)


def title_params(reasoning: bool) -> GenerationParams:
    """What a title is asked with, of a model that reasons (``reasoning``) or not."""
    return REASONING_TITLE_PARAMS if reasoning else TITLE_PARAMS


class TitlePolicy(Value, frozen=True, kw_only=True):
    """Which model titles a chat. ``model`` is ``TITLES_BY_REPLY_MODEL``, ``TITLES_OFF`` or a
    catalog model id (checked against the catalog at start-up)."""

    model: str = TITLES_BY_REPLY_MODEL

    @property
    def enabled(self) -> bool:
        return self.model != TITLES_OFF

    def model_for(self, reply_model: str | None, reply_provider: str | None) -> str | None:
        """The model that titles a chat whose first reply ``reply_model`` (of
        ``reply_provider``) wrote; ``None``: the chat keeps its title (titles off, or a reply
        of the dev model)."""
        if not self.enabled or reply_model is None or reply_provider in NEVER_TITLING_PROVIDERS:
            return None
        return reply_model if self.model == TITLES_BY_REPLY_MODEL else self.model


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def title_prompt(first_message: str, first_reply: str) -> tuple[PromptMessage, ...]:
    """What the titling model is sent: the instruction, then the conversation's start (each
    side cut to ``EXCERPT_CHARS``) in one user message."""
    conversation = f"User:\n{_excerpt(first_message)}\n\nAssistant:\n{_excerpt(first_reply)}"
    return (
        PromptMessage(role=MessageRole.SYSTEM, content=INSTRUCTION),
        PromptMessage(role=MessageRole.USER, content=conversation),
    )


# Pairs that may wrap a whole title: quotes, backticks and markdown bold or italics with
# asterisks (not underscores: ``__init__`` is more likely in a title than underscore emphasis).
_WRAPPERS = (
    ("**", "**"), ("*", "*"), ('"', '"'), ("'", "'"), ("`", "`"), ("“", "”"), ("‘", "’"),
    ("«", "»"),
)  # fmt: skip
_LONE_MARKS = '*"`“”«»'
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:chat\s+)?title\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)
_HEADING = re.compile(r"^#{1,6}\s+")


def _visible(line: str) -> str:
    """Without control and format characters (NUL, BEL, zero-width spaces, BOM: what a
    database refuses or nobody sees), whitespace collapsed."""
    kept = "".join(" " if ch.isspace() else ch for ch in line if unicodedata.category(ch)[0] != "C")
    return " ".join(kept.split())


def _peeled(text: str) -> str:
    """One layer less of what may wrap a title: a heading's ``#``, a ``Title:`` label, a pair
    of quotes or emphasis marks around all of it, a trailing period."""
    text = _HEADING.sub("", _LABEL.sub("", text)).strip()
    for opening, closing in _WRAPPERS:
        wrapped = text.startswith(opening) and text.endswith(closing)
        if wrapped and len(text) >= len(opening) + len(closing):
            text = text[len(opening) : -len(closing)].strip()
            break
    # a mark left unpaired (emphasis opened on one line, closed on the next)
    return text.strip(_LONE_MARKS).strip().rstrip(".。").rstrip()


def clean_title(answer: str) -> str:
    """A model's answer as a title: its first line with something visible once a bare label
    (``Title:``) is set aside, without control or invisible characters, whitespace collapsed,
    a markdown heading's ``#``, a leading ``Title:`` and surrounding quotes, backticks or
    emphasis removed, no trailing period, at most ``TITLE_MAX`` characters (cut at a word when
    it can be). ``""`` when nothing is left."""
    text = ""
    for line in answer.splitlines():
        text = _visible(line)
        for _ in range(4):  # `"Title: x"`, Title: "x", **"x"**…: peel until nothing changes
            before, text = text, _peeled(text)
            if text == before:
                break
        if text:
            break
    if len(text) > TITLE_MAX:
        cut = text[:TITLE_MAX].rsplit(" ", 1)[0]
        text = (cut if cut else text[:TITLE_MAX]).rstrip().rstrip(".。").rstrip()
    return text
