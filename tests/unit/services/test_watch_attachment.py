"""Following a file's status on the in-memory adapters. The watch reads the file only when asked
for its next item (poll interval 0), so each test changes the file between two items."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, Self

from tests.unit.services.test_upload_attachment import PNG, Files
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.projects import MemberRole
from whalli.domain.model.users import User
from whalli.domain.services.files.get_attachment import AttachmentView, GetAttachmentHandler
from whalli.domain.services.files.watch_attachment import (
    HEARTBEAT,
    Change,
    WatchAttachment,
    WatchAttachmentHandler,
    WatchEnd,
)


async def _watch(files: Files, user: User, attachment: Attachment, **options: float) -> Any:
    handler = WatchAttachmentHandler(GetAttachmentHandler(files.uow()), poll_s=0, **options)
    return await handler.execute(WatchAttachment(user_id=user.id, attachment_id=attachment.id))


async def _move(files: Files, attachment: Attachment, step: str) -> None:
    async with files.uow() as uow:
        stored = await uow.attachments.get_for_update(attachment.id)
        now = files.clock.advance(timedelta(seconds=1))
        if step == "start":
            stored.start_processing(now)
        else:
            stored.complete(ExtractionResult(text="Budget 2026", method="text"), now)
        await uow.attachments.update(stored)
        await uow.commit()


def _status(change: Change) -> str:
    assert isinstance(change, AttachmentView)
    return change.attachment.status


async def test_each_change_is_yielded_once_and_the_watch_ends_after_done() -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    changes = await _watch(files, alice, attachment, heartbeat_s=0)
    assert _status(await anext(changes)) == "pending"
    await _move(files, attachment, "start")
    assert _status(await anext(changes)) == "processing"
    await _move(files, attachment, "start")  # a redelivered job takes the work over
    assert await anext(changes) is HEARTBEAT  # only updated_at moved: nothing to show
    await _move(files, attachment, "complete")
    done = await anext(changes)
    assert _status(done) == "done"
    assert isinstance(done, AttachmentView)
    assert done.text_preview == "Budget 2026"
    assert [c async for c in changes] == []


async def test_a_member_removed_while_watching_is_told_the_file_is_gone() -> None:
    files = Files()
    alice, bob = await files.user("alice"), await files.user("bob")
    project = await files.personal(alice)
    await files.share(project, bob, MemberRole.VIEWER)
    attachment = await files.upload(alice, PNG)
    changes = await _watch(files, bob, attachment)
    assert _status(await anext(changes)) == "pending"
    async with files.uow() as uow:
        await uow.projects.remove_member(project.id, bob.id)
        await uow.commit()
    assert [c async for c in changes] == [WatchEnd.DELETED]


async def test_a_final_file_is_yielded_once_and_the_watch_ends() -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    await _move(files, attachment, "start")
    await _move(files, attachment, "complete")
    changes = await _watch(files, alice, attachment, max_lifetime_s=0)
    assert [_status(c) async for c in changes] == ["done"]


class _DownAfterFirstRead(InMemoryUnitOfWork):
    """A database that answers the first read, then goes away."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.reads = 0

    def read_only(self) -> AbstractAsyncContextManager[Self]:
        self.reads += 1
        if self.reads > 1:
            raise ServiceUnavailable("The database is unavailable.")
        return super().read_only()


async def test_a_database_gone_mid_watch_ends_it_with_unavailable() -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    handler = WatchAttachmentHandler(
        GetAttachmentHandler(_DownAfterFirstRead(files.store)), poll_s=0
    )
    changes = await handler.execute(WatchAttachment(user_id=alice.id, attachment_id=attachment.id))

    assert _status(await anext(changes)) == "pending"
    assert [c async for c in changes] == [WatchEnd.UNAVAILABLE]
