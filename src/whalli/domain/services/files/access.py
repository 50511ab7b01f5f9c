"""The access rule of file use cases: a file is as visible as its project.

A caller who may not read a file's project is told ``AttachmentNotFound``, exactly as for an id
that does not exist, so that file ids cannot be probed; a member whose role does not grant the
action is told ``PermissionDenied`` (see ``domain.services.projects.access``).
"""

from __future__ import annotations

from uuid import UUID

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.errors import AttachmentNotFound, ProjectNotFound
from whalli.domain.services.projects.access import Need, require_role
from whalli.ports.unit_of_work import UnitOfWork


async def require_attachment(
    uow: UnitOfWork, attachment_id: UUID, user_id: UUID, need: Need
) -> Attachment:
    """The attachment, if the caller's role in its project grants ``need``; call inside
    ``async with uow:``.

    Raises ``AttachmentNotFound`` when the file does not exist or the caller is not a member of
    its project, and ``PermissionDenied`` when the caller's role does not grant ``need``.
    """
    attachment = await uow.attachments.get(attachment_id)
    try:
        await require_role(uow, attachment.project_id, user_id, need)
    except ProjectNotFound:
        raise AttachmentNotFound() from None
    return attachment
