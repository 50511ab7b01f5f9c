"""Use case: change a chat's title, its system prompt, or pin or archive it."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.chats import Chat
from whalli.domain.services.chats.access import require_chat
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class UpdateChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    title: str | None = None  # None: unchanged
    # UNSET: unchanged; None (or blank text): removed
    system_prompt: str | msgspec.UnsetType | None = msgspec.UNSET
    pinned: bool | None = None  # None: unchanged
    archived: bool | None = None  # None: unchanged


class UpdateChatHandler:
    """Rename a chat, change its system prompt, pin or unpin it, archive or unarchive it.

    Rules:
    - owners and editors of the chat's project may change it; a viewer gets
      ``PermissionDenied``, a non-member ``ChatNotFound`` (access is checked before the
      fields, so that a stranger learns nothing from the answer);
    - whitespace runs become one space; the title needs 1 to ``TITLE_MAX`` characters
      (``InvalidInput``);
    - the system prompt has at most ``SYSTEM_PROMPT_MAX`` characters; blank text removes it;
      it applies to the replies generated from then on (the ones before keep theirs);
    - a new title or system prompt counts as an update: the chat moves to the top of its
      project's list; pinning and archiving do not (the chat keeps its place);
    - archiving unpins; an archived chat cannot be pinned (``InvalidInput``) unless the same
      change unarchives it (archiving is applied first, so pinned + archived is refused);
      pinning a pinned chat (or archiving an archived one) keeps its first time;
    - nothing to change (an empty PATCH) changes nothing, but is still checked like a change:
      a viewer gets ``PermissionDenied``, not the chat.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: UpdateChat) -> Chat:
        async with self._uow as uow:
            # locked: two changes at once (a rename and a new system prompt, from two tabs)
            # run one after the other, each writing on what the other wrote
            chat = await require_chat(uow, command.chat_id, command.user_id, "write", lock=True)
            prompt = command.system_prompt
            fields = (command.title, command.pinned, command.archived)
            if all(f is None for f in fields) and isinstance(prompt, msgspec.UnsetType):
                return chat
            now = self._clock.now()
            if command.title is not None:
                chat.rename(command.title, now)
            if not isinstance(prompt, msgspec.UnsetType):
                chat.instruct(prompt, now)
            if command.archived is not None:
                chat.archive(command.archived, now)
            if command.pinned is not None:
                chat.pin(command.pinned, now)
            await uow.chats.update(chat)
            await uow.commit()
        return chat
