"""What opening a reply takes, shared by the start of a chat and the regeneration of a reply:
the attached files' text (the new message's and the earlier messages'), and saving the
reply's messages and session while it is launched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar
from uuid import UUID

from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import Chat, Message, MessageRole, PromptMessage, ReasoningEffort
from whalli.domain.model.errors import AttachmentNotFound, ServiceUnavailable
from whalli.domain.model.users import User
from whalli.domain.services.chat.context import ContextLimits, PreparedReply
from whalli.domain.services.chat.prompt_files import (
    ImagesToRead,
    ReadImages,
    attached_files,
    read_images,
)
from whalli.domain.services.chat.prompt_source import PromptSource
from whalli.domain.services.chat.textless_images import not_ready, textless_refusal
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.unit_of_work import UnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)


class LaunchReply(Protocol):
    """Start generating ``prepared`` now, in the background. ``saved`` resolves once the
    start's transaction committed and its session is stored; the generation must not persist
    anything before, and is cancelled when ``saved`` is cancelled (the start failed)."""

    def __call__(
        self, session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]
    ) -> None: ...


# Files of earlier messages read for a reply's context: the newest this many. Older ones would
# not fit any model's window anyway: 50 files at the 20,000-character cap are ~250,000 tokens.
MAX_EARLIER_FILES = 50


async def caller(
    uow: UnitOfWork, user_id: UUID, read: User | None, read_at: datetime | None, now: datetime
) -> tuple[User, datetime | None]:
    """The caller and when they were read: as authentication read them for this request
    (``read`` at ``read_at``), else read here (at ``now``, taken before the read)."""
    if read is not None and read.id == user_id:
        return read, read_at
    return await uow.users.get(user_id), now


async def read_attachments(
    uow: UnitOfWork,
    project_id: UUID,
    attachment_ids: tuple[UUID, ...],
    *,
    strict: bool = True,
    max_chars: int | None = None,
    images_for: ModelSpec | None = None,
) -> list[Attachment]:
    """Each attachment, in order, which must belong to ``project_id``
    (else ``AttachmentNotFound``, naming the id asked for as ``attachment_id``: the caller
    named it, so it tells nothing; which of several files is gone) and have its text
    extracted (else ``AttachmentNotReady``, naming the file and its state as
    ``attachment_status``). One read for all of them.

    ``strict=False`` (files the user named before, as a regenerated question's): a file
    deleted, failed or no longer in ``project_id`` since is left out instead, as an earlier
    message's is (``read_earlier_attachments``).

    ``max_chars``: only the first this many characters of each text are read (what a prompt
    uses: ``get_many_excerpts``); ``None``, the whole text (a voice message's transcript).

    ``images_for``: the model the files go to, when it may be sent images: a file without its
    text that it reads as an image is kept (``textless_images``; its image is checked once
    read)."""
    found = await _read(uow, attachment_ids, max_chars) if attachment_ids else {}
    files = []
    for attachment_id in attachment_ids:
        attachment = found.get(attachment_id)
        if attachment is None or attachment.project_id != project_id:
            if not strict:
                continue
            raise AttachmentNotFound(
                f"File not found: {attachment_id}.", attachment_id=str(attachment_id)
            )
        if attachment.status is not AttachmentStatus.DONE:
            why = textless_refusal(images_for, attachment)
            if why is None:
                files.append(attachment)
            elif strict:
                raise not_ready(attachment, why if images_for is not None else None)
            continue
        files.append(attachment)
    return files


async def _read(
    uow: UnitOfWork, attachment_ids: Sequence[UUID], max_chars: int | None
) -> dict[UUID, Attachment]:
    if max_chars is None:
        return await uow.attachments.get_many(attachment_ids)
    return await uow.attachments.get_many_excerpts(attachment_ids, max_chars)


async def read_earlier_attachments(
    uow: UnitOfWork,
    project_id: UUID,
    history: Sequence[Message] | None,
    max_chars: int,
    images_for: ModelSpec | None = None,
) -> dict[UUID, Attachment]:
    """The files attached to the user's earlier messages, by id: they join the context with
    their messages (``build_context``). Only the newest
    ``MAX_EARLIER_FILES``; a file deleted since, failed, or no longer in ``project_id`` is
    left out (its message goes without it). Nothing is read when no earlier message has one.
    Of each text, only the first ``max_chars`` characters are read (``get_many_excerpts``):
    the chat is locked meanwhile, and a prompt takes no more of a file. A file without its
    text is kept as ``read_attachments`` keeps one for ``images_for``."""
    wanted: dict[UUID, None] = {}
    for message in reversed(history or ()):
        if message.role is MessageRole.USER:
            wanted.update(dict.fromkeys(message.attachment_ids))
        if len(wanted) >= MAX_EARLIER_FILES:
            break
    if not wanted:
        return {}
    found = await uow.attachments.get_many_excerpts(list(wanted)[:MAX_EARLIER_FILES], max_chars)
    return {
        a.id: a
        for a in found.values()
        if a.project_id == project_id
        and (a.status is AttachmentStatus.DONE or textless_refusal(images_for, a) is None)
    }


async def prompt_for(
    uow: UnitOfWork,
    chat: Chat,
    history: Sequence[Message] | None,
    text: str,
    attachment_ids: tuple[UUID, ...],
    *,
    spec: ModelSpec,
    limits: ContextLimits,
    blobs: BlobStorage | None,
    images: ReadImages | None,
    reply_tokens: int | None = None,
    effort: ReasoningEffort | None = None,
    strict: bool = True,
) -> tuple[tuple[PromptMessage, ...], PromptSource]:
    """The prompt of a user's message ``text`` with its files, after ``history`` (the chat's
    earlier messages, with theirs) and under the chat's system prompt, for ``spec``
    (``read_attachments``, ``read_earlier_attachments``, ``prompt_files``, ``build_context``),
    and what it was built from (for the reply's fallbacks: ``PromptSource``).

    ``images``: the files already read as images (``with_images_read``). ``None``: none were,
    and a prompt that wants some raises ``ImagesToRead`` before reading any (this runs inside
    the caller's transaction); given, any image still missing is read here (the chat changed
    in between: rare). ``reply_tokens``: the reply's ``maxTokens``, kept free of the window
    with the thinking budget of its reasoning ``effort`` (``ContextLimits.build``).
    ``strict``: as ``read_attachments`` takes the message's own files (``False`` when the
    message is not new: a regenerated question goes on without a file gone since)."""
    cap = limits.attachment_char_cap  # no more of a file's text is read than a prompt uses
    seeing = spec if blobs is not None and spec.sees_images else None  # sent images
    attached = await read_attachments(
        uow, chat.project_id, attachment_ids, strict=strict, max_chars=cap, images_for=seeing
    )
    earlier = await read_earlier_attachments(uow, chat.project_id, history, cap, seeing)
    files, earlier_files, chosen_from = await attached_files(
        spec, blobs, attached, history, earlier, images,
        read_here=images is not None, strict=strict,
    )  # fmt: skip
    source = PromptSource(
        limits, history, text, files, chat.system_prompt, earlier_files, chosen_from
    )
    return source.build(spec, reply_tokens=reply_tokens, effort=effort), source


async def with_images_read(
    blobs: BlobStorage | None, opening: Callable[[ReadImages | None], Awaitable[T]]
) -> T:
    """``opening(None)``; when it wants images (``ImagesToRead``, raised before it wrote
    anything, its transaction left), they are read here, outside any transaction, and it
    runs again with them."""
    try:
        return await opening(None)
    except ImagesToRead as wanted:
        if blobs is None:  # (no store, no image is ever wanted)
            raise
        images = await read_images(blobs, wanted.attachments)
    return await opening(images)


class ReplyOpening:
    """The end of a start or a regeneration: the reply's messages written, its generation
    launched and its session stored, the session's store awaited only once the caller's unit
    of work is left (see ``opening_reply``)."""

    def __init__(self, sessions: ChatSessionStore) -> None:
        self._sessions = sessions
        self._launched: _Launched | None = None
        # set once the write committed: what takes it back
        self._undo: Callable[[], Awaitable[None]] | None = None

    async def save_and_launch(
        self,
        session: ChatSession,
        prepared: PreparedReply,
        now: datetime,
        launch: LaunchReply | None,
        write: Callable[[], Awaitable[None]],
        undo: Callable[[], Awaitable[None]],
    ) -> None:
        """Launch the reply's generation, and store its session while ``write`` saves its
        messages (and commits them). ``undo``, in a unit of work of its own, takes back what
        ``write`` committed, should the reply not be opened after all.

        The session is stored while the messages are written (one round trip less before the
        answer), and queued before the generation: its first step (building the provider
        request) would otherwise delay the session's write. If ``write`` fails, the generation
        is cancelled and the session deleted again: nobody knew its id yet, so no one ever
        reads a session whose message does not exist.
        """
        saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        storing = asyncio.ensure_future(self._sessions.save(session, now))
        self._launched = _Launched(session, storing, saved)
        if launch is not None:
            launch(session, prepared, saved)
        await write()
        self._undo = undo

    async def _stored(self) -> None:
        if self._launched is None:
            return
        try:
            await self._launched.storing
        except BaseException:
            await self._abandon()
            raise
        if self._launched.saved.done():  # the generation was cancelled meanwhile (a shutdown)
            await self._abandon()
            raise ServiceUnavailable("The reply could not be started; try again.")
        self._launched.saved.set_result(None)

    async def _abandon(self) -> None:
        if self._launched is None:
            return
        session, storing, saved = self._launched
        saved.cancel()
        with contextlib.suppress(BaseException):
            await storing
        with contextlib.suppress(Exception):
            await self._sessions.delete(session.id)
        if self._undo is None:
            return  # rolled back (or never written)
        try:
            await self._undo()
        except Exception:  # the sweeper still ends the reply later
            log.warning(
                "What opened reply %s was not taken back; the sweeper will fail it.",
                session.reply_message_id,
                exc_info=True,
            )


class _Launched(NamedTuple):
    session: ChatSession
    storing: asyncio.Future[None]  # the session's store
    saved: asyncio.Future[None]  # what tells the generation it may persist its reply


@contextlib.asynccontextmanager
async def opening_reply(sessions: ChatSessionStore) -> AsyncIterator[ReplyOpening]:
    """Around the unit of work of a start or a regeneration, which calls
    ``ReplyOpening.save_and_launch`` last: the session's store is awaited after the unit of
    work is left, so its database connection goes back to the pool instead of waiting for
    Redis (at 16 concurrent starts, the pool's 10 connections ran out). Then the generation
    may persist its reply.

    If anything fails after the launch (the write, leaving the unit of work, storing the
    session, or the generation cancelled meanwhile by a shutdown), the generation is
    cancelled, the session deleted, and what the write committed is taken back (``undo``):
    no reply is left ``pending`` until the sweeper finds it, blocking the chat's next
    regeneration, and a failed start leaves no message, as when its write fails."""
    opening = ReplyOpening(sessions)
    try:
        yield opening
    except BaseException:
        await opening._abandon()
        raise
    await opening._stored()
