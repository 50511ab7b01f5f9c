"""Use case: change an account's role, plan or disabled flag (admins only)."""

from __future__ import annotations

import logging
from uuid import UUID

import msgspec

from whalli.domain.model.errors import LastAdmin
from whalli.domain.model.users import Plan, Role, User
from whalli.domain.services.admin.access import require_admin
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.chat.stop_replies import ReplyStopper
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


class UpdateUser(msgspec.Struct, frozen=True, kw_only=True):
    """``None`` leaves a field as it is."""

    admin_id: UUID
    user_id: UUID
    role: Role | None = None
    plan: Plan | None = None
    disabled: bool | None = None
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key


class UpdateUserHandler:
    """Apply an admin's change to account ``user_id`` and return the account.

    Rules:
    - active admins only (``PermissionDenied``), signed in with a session: an API key gets
      ``ApiKeyNotAllowed`` (403), so a leaked key cannot promote, demote or disable anyone;
      an unknown account: ``UserNotFound``;
    - disabling an account revokes all its sessions (refresh-token families) and API keys in the
      same transaction, so it cannot keep working until its tokens expire; access tokens die with
      the next request, since the guard reads the account afresh; once committed, that end
      is noted and told (``AccessChanges.ended``), any other change told (``changed``);
    - disabling an account also revokes every shared link it created, in the same transaction:
      a link made with a stolen session must not open again once the account is enabled (as
      its keys and sessions stay ended); once committed, the replies its sessions are still
      generating, in any of its projects, are asked to stop (``ReplyStopper``, best effort):
      each ends ``aborted`` with the text it had, nothing more billed to it;
    - a change that leaves no active admin (the last one demoting or disabling themself) is
      refused with ``LastAdmin``; a change that may remove an admin first locks the active
      admins, so that two such changes at once (two admins demoting each other) run one after
      the other and the second sees the first: it is refused, as its caller is no longer an
      admin (``PermissionDenied``) or as it would leave none (``LastAdmin``);
    - a change that changes nothing is not written.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        access: AccessChanges | None = None,
        stopper: ReplyStopper | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._access = access
        self._stopper = stopper

    async def execute(self, command: UpdateUser) -> User:
        async with self._uow as uow:
            await require_admin(uow, command.admin_id, api_key_id=command.api_key_id)
            if _may_remove_admin(command):
                await uow.users.lock_admins()  # before reading: the account is read as locked
                # and the caller again: a change that committed while we waited may have
                # removed their own rights (an admin demoted by the one they were demoting)
                await require_admin(uow, command.admin_id, api_key_id=command.api_key_id)
            # held: a session refresh in flight ends before, so disabling revokes its successor
            user = await uow.users.get_for_update(command.user_id)
            changed = msgspec.structs.replace(
                user,
                role=command.role or user.role,
                plan=command.plan or user.plan,
                disabled=user.disabled if command.disabled is None else command.disabled,
            )
            if changed == user:
                return user
            if user.is_admin and not changed.is_admin and await uow.users.count_admins() <= 1:
                raise LastAdmin("You are the last active admin; appoint another admin first.")
            changed.updated_at = self._clock.now()
            await uow.users.update(changed)
            if changed.disabled and not user.disabled:
                await uow.refresh_tokens.revoke_all_for_user(user.id, changed.updated_at)
                await uow.api_keys.revoke_all_for_user(user.id, changed.updated_at)
                await uow.shares.revoke_all_by_creator(user.id, changed.updated_at)
            if self._access is not None:  # refused (nothing saved) if it could not reach all
                await self._access.prepare(user.id)
            await uow.commit()
        if self._access is not None:
            if changed.disabled and not user.disabled:
                await self._access.ended(user.id)
            else:
                await self._access.changed(user.id)
        if changed.disabled and not user.disabled:
            await self._stop_replies(user.id)
        return changed

    async def _stop_replies(self, user_id: UUID) -> None:
        """Ask the replies the (now disabled) account's sessions generate to stop."""
        if self._stopper is None:
            return
        of = f"disabled account {user_id}"
        try:
            async with self._uow.read_only() as uow:
                replies = [
                    reply
                    for project in await uow.projects.list_for_user(user_id)
                    for reply in await uow.chats.unfinished_replies_in_project(project.id)
                ]
        except Exception:  # committed: the replies end as they would have
            log.warning("The replies of %s were not read to be stopped.", of, exc_info=True)
            return
        await self._stopper.stop(replies, of=of, started_by=user_id)


def _may_remove_admin(command: UpdateUser) -> bool:
    return command.disabled is True or command.role not in (None, Role.ADMIN)
