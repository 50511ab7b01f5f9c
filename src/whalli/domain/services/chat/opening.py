"""What opening a reply takes, shared by the start of a chat and the regeneration of a reply:
the attached files' text, and saving the reply's messages and session while it is launched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.attachments import AttachmentStatus
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.errors import AttachmentNotFound, AttachmentNotReady
from whalli.domain.services.chat.context import PreparedReply
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.unit_of_work import UnitOfWork


class LaunchReply(Protocol):
    """Start generating ``prepared`` now, in the background. ``saved`` resolves once the
    start's transaction committed and its session is stored; the generation must not persist
    anything before, and is cancelled when ``saved`` is cancelled (the start failed)."""

    def __call__(
        self, session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]
    ) -> None: ...


async def read_attachments(
    uow: UnitOfWork, project_id: UUID, attachment_ids: tuple[UUID, ...]
) -> list[tuple[str, str]]:
    """(file name, extracted text) of each attachment, which must belong to ``project_id``
    (else ``AttachmentNotFound``) and have its text extracted (else ``AttachmentNotReady``,
    naming the file and its status)."""
    files = []
    for attachment_id in attachment_ids:
        attachment = await uow.attachments.get(attachment_id)
        if attachment.project_id != project_id:
            raise AttachmentNotFound()
        if attachment.status is not AttachmentStatus.DONE:
            reason = attachment.failure_reason or "its text is still being extracted"
            raise AttachmentNotReady(
                f"The file {attachment.filename!r} is not ready: {reason}.",
                attachmentId=str(attachment.id),
                filename=attachment.filename,
                status=str(attachment.status),
            )
        text = attachment.extraction.text if attachment.extraction else ""
        files.append((attachment.filename, text))
    return files


async def save_and_launch(
    sessions: ChatSessionStore,
    session: ChatSession,
    prepared: PreparedReply,
    now: datetime,
    launch: LaunchReply | None,
    write: Callable[[], Awaitable[None]],
) -> None:
    """Launch the reply's generation, and store its session while ``write`` saves its messages.

    The session is stored while the messages are written (one round trip less before the
    answer), and queued before the generation: its first step (building the provider request)
    would otherwise delay the session's write. If either fails, the generation is cancelled and
    the session deleted again: nobody knew its id yet, so no one ever reads a session whose
    message does not exist.
    """
    saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    storing = asyncio.ensure_future(sessions.save(session, now))
    try:
        if launch is not None:
            launch(session, prepared, saved)
        await write()
        await storing
    except BaseException:
        saved.cancel()
        with contextlib.suppress(BaseException):
            await storing
        with contextlib.suppress(Exception):
            await sessions.delete(session.id)
        raise
    saved.set_result(None)
