"""The rule every admin use case goes through."""

from __future__ import annotations

from uuid import UUID

from whalli.domain.model.errors import PermissionDenied, UserNotFound
from whalli.domain.model.users import User
from whalli.ports.unit_of_work import UnitOfWork


async def require_admin(uow: UnitOfWork, user_id: UUID) -> User:
    """The caller, if they are an active admin; call inside ``async with uow:``.

    The account is read afresh, so an admin who was demoted or disabled loses admin rights on
    their next request. Raises ``PermissionDenied`` otherwise (admin routes exist for everyone;
    hiding them behind a 404 would protect nothing).
    """
    try:
        user = await uow.users.get(user_id)
    except UserNotFound:
        user = None
    if user is None or not user.is_admin:
        raise PermissionDenied("Only admins may do this.", need="admin")
    return user
