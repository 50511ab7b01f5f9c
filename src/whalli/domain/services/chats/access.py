"""The access rule of chat use cases: a chat is as visible as its project.

A caller who may not read a chat's project is told ``ChatNotFound``, exactly as for an id that
does not exist, so that chat ids cannot be probed; a member whose role does not grant the action
is told ``PermissionDenied`` (see ``domain.services.projects.access``).
"""

from __future__ import annotations

from uuid import UUID

from whalli.domain.model.chats import Chat
from whalli.domain.model.errors import ChatNotFound, ProjectNotFound
from whalli.domain.services.projects.access import Need, require_role
from whalli.ports.unit_of_work import UnitOfWork


async def require_chat(
    uow: UnitOfWork, chat_id: UUID, user_id: UUID, need: Need, *, lock: bool = False
) -> Chat:
    """The chat, if the caller's role in its project grants ``need``; call inside ``async with``.
    With ``lock``, the chat is locked until the unit of work ends (``ChatRepository.lock``).

    Raises ``ChatNotFound`` when the chat does not exist or the caller is not a member of its
    project, and ``PermissionDenied`` when the caller's role does not grant ``need``.
    """
    chat = await (uow.chats.lock(chat_id) if lock else uow.chats.get(chat_id))
    try:
        await require_role(uow, chat.project_id, user_id, need)
    except ProjectNotFound:
        raise ChatNotFound() from None
    return chat
