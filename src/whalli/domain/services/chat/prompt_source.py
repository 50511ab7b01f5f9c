"""What a chat reply's prompt is built from, kept with the prepared reply so that a fallback
model gets the prompt built for its own window.

Rules (``GenerateReplyHandler`` tries a model's fallbacks when it fails before its first token):
- the model asked for is sent the prompt the start built for it, as it was built: nothing is
  built again when no fallback is needed;
- a fallback is sent the prompt built again for its window (``ContextLimits.build``: the
  history trimmed oldest-first, a file of an earlier message first left out), with its own
  reply room: a fallback with a smaller window is never sent a prompt it would refuse
  (OpenAI's ``context_length_exceeded``);
- it is asked the parameters as it takes them (``ModelSpec.fitted``), and never for more
  tokens than its window holds: a ``maxTokens`` that leaves it no room for the new message
  (with its files and the chat's system prompt) is cut to what its window leaves once the
  new message is in (its history then gets what is left, maybe nothing);
- a fallback that reads images gets the attached files as its own provider takes them
  (``AttachedFiles.for_model``: an image it refuses, of a type or a size, goes as its text, as
  it would have asked first), from the images already read for the model asked: none is read
  again;
- a fallback whose window cannot hold the new message at all is skipped, as one that cannot
  read the prompt's images is: the reply fails with the last error if no model is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import GenerationParams, Message, PromptMessage, ReasoningEffort
from whalli.domain.model.errors import InvalidInput
from whalli.domain.services.chat.context import ContextLimits, new_turn_tokens
from whalli.domain.services.chat.prompt_files import AttachedFiles, PromptFile


@dataclass(frozen=True)
class PromptSource:
    """The inputs of ``ContextLimits.build`` for one reply (see the module docstring)."""

    limits: ContextLimits
    history: Sequence[Message] | None
    new_message: str
    attachments: Sequence[PromptFile]
    system: str | None
    earlier_files: Mapping[UUID, PromptFile]
    # what ``attachments`` and ``earlier_files`` were chosen from, for the model asked
    # (``None``: every model is sent them as they are)
    attached: AttachedFiles | None = None

    def build(
        self, spec: ModelSpec, *, reply_tokens: int | None, effort: ReasoningEffort | None
    ) -> tuple[PromptMessage, ...]:
        """The prompt for ``spec`` (``ContextLimits.build``; raises its ``InvalidInput``),
        with the files as chosen for the model asked."""
        return self._built(
            spec, self.attachments, self.earlier_files, reply_tokens=reply_tokens, effort=effort
        )

    def _built(
        self,
        spec: ModelSpec,
        attachments: Sequence[PromptFile],
        earlier_files: Mapping[UUID, PromptFile],
        *,
        reply_tokens: int | None,
        effort: ReasoningEffort | None,
    ) -> tuple[PromptMessage, ...]:
        return self.limits.build(
            spec, self.history, self.new_message, attachments, self.system, earlier_files,
            reply_tokens=reply_tokens, effort=effort,
        )  # fmt: skip

    def for_fallback(
        self, spec: ModelSpec, params: GenerationParams
    ) -> tuple[tuple[PromptMessage, ...], GenerationParams] | None:
        """The prompt for the fallback ``spec`` and the parameters it is asked (from those
        the reply was asked, ``params``); ``None`` when it cannot take the new message."""
        params = spec.fitted(params)
        files, earlier_files = self.attachments, self.earlier_files
        if self.attached is not None and spec.sees_images:  # (one blind to them is skipped)
            files, earlier_files = self.attached.for_model(spec)
        asked = params.max_tokens
        if asked is not None:
            room = spec.context_window - new_turn_tokens(
                self.new_message, files, self.system, self.limits.attachment_char_cap
            )
            if room < 1:
                return None
            if asked > room:
                params = msgspec.structs.replace(params, max_tokens=room)
        try:
            prompt = self._built(
                spec, files, earlier_files,
                reply_tokens=params.max_tokens, effort=params.reasoning_effort,
            )  # fmt: skip
        except InvalidInput:  # its window cannot hold the new message
            return None
        return prompt, params
