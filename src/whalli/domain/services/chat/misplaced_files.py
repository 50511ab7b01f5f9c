"""Why a start cannot attach a file it named: gone, or in another project than the chat's."""

from __future__ import annotations

from uuid import UUID

from whalli.domain.model.errors import (
    AttachmentNotFound,
    InvalidInput,
    PermissionDenied,
    ProjectNotFound,
)
from whalli.domain.services.projects.access import require_role
from whalli.ports.unit_of_work import UnitOfWork


async def explained(uow: UnitOfWork, user_id: UUID, error: AttachmentNotFound) -> Exception:
    """The error a start answers for ``error`` (a file it named is not in the chat's project).

    Rules:
    - a file that exists in a project the caller may read (their own upload, in another
      project than the chat's) is ``InvalidInput`` naming it (``attachmentIds``): a file they
      see in their list is not "not found", and they may attach it in its project's chats or
      upload it to this one;
    - anything else (deleted, never existed, or in a project the caller cannot read) stays
      ``error`` as it was: the same 404 for all of them, so file ids cannot be probed.

    Reads in a transaction of its own (the start's was left): it costs nothing unless a start
    fails so."""
    named = error.details.get("attachment_id")
    if not isinstance(named, str):
        return error
    attachment_id = UUID(named)
    async with uow.read_only() as reading:
        found = (await reading.attachments.get_many([attachment_id])).get(attachment_id)
        if found is None:
            return error
        try:
            await require_role(reading, found.project_id, user_id, "read")
        except (ProjectNotFound, PermissionDenied):
            return error
    return InvalidInput(
        f"The file {found.filename!r} is in another project than this chat's: attach it to a "
        "chat of its project, or upload it to this chat's project.",
        field="attachmentIds",
        attachment_id=named,
    )
