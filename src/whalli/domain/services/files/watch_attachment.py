"""Use case: follow one file's status (and what is shown with it) until its extraction ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from enum import StrEnum
from uuid import UUID

import msgspec

from whalli.domain.model.errors import AttachmentNotFound, ServiceUnavailable
from whalli.domain.services.files.get_attachment import (
    AttachmentView,
    GetAttachment,
    GetAttachmentHandler,
)

HEARTBEAT = None  # yielded when nothing was sent for a while: the client should get a comment


class WatchEnd(StrEnum):
    """Why a watch ended without a final status: the last item a watch yields."""

    DELETED = "deleted"  # gone, or no longer visible to the caller (told apart by nobody)
    TIMEOUT = "timeout"  # the watch outlived ``max_lifetime_s``: the caller may watch again
    UNAVAILABLE = "unavailable"  # the file could not be read (the database is down): try later


Change = AttachmentView | WatchEnd | None


class WatchAttachment(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    attachment_id: UUID


class WatchAttachmentHandler:
    """Rules:
    - the access rule is ``GetAttachment``'s, applied by ``execute`` before anything is
      yielded (a file the caller may not read raises ``AttachmentNotFound`` there, as for an id
      that does not exist), and again on every poll, so a member who was removed stops seeing
      the file at the next one;
    - the first item is the file as it is now; then the file is read every ``poll_s`` and
      yielded again whenever what a reader is shown changed: its status, failure reason, text
      preview, page count, truncation, name or project (not bookkeeping such as
      ``updated_at``, which a job taking over a ``processing`` file moves alone);
    - the iteration ends after a ``done`` or ``failed`` view has been yielded, with
      ``WatchEnd.DELETED`` once the file can no longer be read, with ``WatchEnd.UNAVAILABLE``
      when a poll finds the store down (the caller may watch again later), and with
      ``WatchEnd.TIMEOUT`` ``max_lifetime_s`` after ``execute`` (so no watch holds a
      connection forever);
    - when nothing was yielded for ``heartbeat_s`` a ``HEARTBEAT`` (None) is yielded, so the
      caller can keep proxies from closing an idle connection;
    - polling reads what is committed (any process's worker), one read-only unit of work per
      poll; closing the iterator stops it at once.
    """

    def __init__(
        self,
        get_attachment: GetAttachmentHandler,
        *,
        poll_s: float = 0.5,
        heartbeat_s: float = 15.0,
        max_lifetime_s: float = 600.0,
    ) -> None:
        self._get = get_attachment
        self._poll_s, self._heartbeat_s, self._lifetime_s = poll_s, heartbeat_s, max_lifetime_s

    async def execute(self, command: WatchAttachment) -> AsyncGenerator[Change, None]:
        """The changes to yield; raises ``AttachmentNotFound`` now if the caller may not read
        the file (before the caller has promised a stream to anyone)."""
        get = GetAttachment(user_id=command.user_id, attachment_id=command.attachment_id)
        first = await self._get.execute(get)
        deadline = asyncio.get_running_loop().time() + self._lifetime_s
        return self._changes(get, first, deadline)

    async def _changes(
        self, command: GetAttachment, shown: AttachmentView, deadline: float
    ) -> AsyncGenerator[Change, None]:
        loop = asyncio.get_running_loop()
        yield shown
        sent_at = loop.time()
        while not shown.attachment.is_final:
            left = deadline - loop.time()
            if left <= 0:
                yield WatchEnd.TIMEOUT
                return
            await asyncio.sleep(min(self._poll_s, left))
            try:
                view = await self._get.execute(command)
            except AttachmentNotFound:
                yield WatchEnd.DELETED
                return
            except ServiceUnavailable:
                yield WatchEnd.UNAVAILABLE
                return
            if _visible(view) != _visible(shown):
                shown = view
                yield view
                sent_at = loop.time()
            elif loop.time() - sent_at >= self._heartbeat_s:
                yield HEARTBEAT
                sent_at = loop.time()


def _visible(view: AttachmentView) -> tuple[object, ...]:
    a = view.attachment
    return (
        a.status, a.failure_reason, view.text_preview, view.page_count, view.truncated,
        a.filename, a.project_id,
    )  # fmt: skip
