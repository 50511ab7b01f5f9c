"""The rule every admin use case goes through."""

from __future__ import annotations

from uuid import UUID

from whalli.domain.model.errors import ApiKeyNotAllowed, PermissionDenied, UserNotFound
from whalli.domain.model.users import User
from whalli.ports.unit_of_work import UnitOfWork


async def require_admin(uow: UnitOfWork, user_id: UUID, *, api_key_id: UUID | None) -> User:
    """The caller, if they are an active admin signed in with a session; call inside
    ``async with uow:``.

    The account is read afresh, so an admin who was demoted or disabled loses admin rights on
    their next request. Raises ``PermissionDenied`` otherwise (admin routes exist for everyone;
    hiding them behind a 404 would protect nothing). An admin authenticated by an API key
    (``api_key_id`` set) is refused with ``ApiKeyNotAllowed`` (a ``PermissionDenied``): a leaked
    script key must not grant admin power. The role is checked first, so a non-admin's key is
    told that admins only may do this, not that signing in would help.
    """
    try:
        user = await uow.users.get(user_id)
    except UserNotFound:
        user = None
    if user is None or not user.is_admin:
        raise PermissionDenied("Only admins may do this.", need="admin")
    if api_key_id is not None:
        raise ApiKeyNotAllowed("An API key cannot use admin routes; sign in to do it.")
    return user
