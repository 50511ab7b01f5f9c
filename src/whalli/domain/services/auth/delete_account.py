"""Use case: delete one's own account and everything only it holds (the right to erasure)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.errors import (
    ApiKeyNotAllowed,
    InvalidCredentials,
    InvalidEmail,
    InvalidInput,
    LastAdmin,
    OwnsSharedProjects,
    ProjectNotFound,
    ReauthenticationRequired,
    UserNotFound,
)
from whalli.domain.model.projects import Project
from whalli.domain.model.users import User, normalize_email
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.accounts import check_password
from whalli.domain.services.auth.sessions import masked_repr
from whalli.domain.services.chat.stop_replies import ReplyStopper
from whalli.domain.services.files.stored_objects import delete_objects
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.clock import Clock
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.unit_of_work import UnitOfWork


class DeleteAccount(msgspec.Struct, frozen=True, kw_only=True):
    """``password`` confirms for an account that has one, ``email`` for one that has none."""

    user_id: UUID
    password: str | None = None
    email: str | None = None
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key
    session_id: UUID | None = None  # the caller's session (refresh-token family), if signed in

    def __repr__(self) -> str:
        return masked_repr(self, "password", "email")


# How recent the sign-in of an account without a password must be to delete it
RECENT_SIGN_IN = timedelta(minutes=10)


class DeleteAccountHandler:
    """Delete the caller's account, the projects it owns alone and everything in them.

    Rules:
    - only a session may do it: an API key gets ``ApiKeyNotAllowed`` (403), before anything
      else (``refuse_api_key``: nor counted against the login limits);
    - it is confirmed: an account with a password gives it, checked as ``ChangePassword``
      checks the current one (``check_password``: off the event loop, a wrong one, a disabled
      or deleted account alike and in about the same time), a wrong one ``InvalidCredentials``
      naming ``password``; none given: ``InvalidInput`` naming ``password``. An account without
      one (made by an OAuth sign-in) types its address instead, compared normalized
      (``normalize_email``); missing or another: ``InvalidInput`` naming ``email``. As the
      address is no secret (an access token reads it), such an account also needs a recent
      sign-in: the caller's session began at most ``RECENT_SIGN_IN`` (10 min) ago by the
      ``clock``, else ``ReauthenticationRequired`` (403: sign in with the provider again), as
      GitHub's sudo mode asks; without a session or a clock to tell, it is refused too;
    - refused (``LastAdmin``, nothing deleted) when it would leave no active admin, as
      ``UpdateUser`` refuses it, the active admins locked first so that two admins deleting
      themselves at once run one after the other;
    - refused (``OwnsSharedProjects`` with their ``project_ids``, nothing deleted) while it owns
      a non-personal project with other members: they hand it over or it is deleted first;
    - in one unit of work, the account locked against every new row referring to it (and each
      owned project against new rows in it) so that what is read is all there is: every owned
      project goes with everything in it (the personal one, whoever else it has, and the
      unshared ones), then the account, whose sessions, API keys, memberships, chats, files in
      other projects, usage, presets, feedback and shared links go with it (the schema
      cascades); nothing is deleted unless all of it is;
    - once committed, the end of its credentials is noted and told (``AccessChanges.ended``,
      as ``LogoutAll``): a read of the account made just before (a start's) is then not
      trusted without a new one;
    - once committed, the replies still generated in the chats that went (the account's own
      anywhere and every chat of the deleted projects) are asked to stop (``ReplyStopper``,
      best effort), as deleting a chat stops its replies;
    - once committed, the stored bytes of every file that went (the account's own anywhere and
      every file of the deleted projects) are deleted too, best effort (``delete_objects``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        blobs: BlobStorage,
        *,
        hasher: PasswordHasher,
        stopper: ReplyStopper | None = None,
        clock: Clock | None = None,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._hasher = hasher
        self._stopper = stopper
        self._clock = clock
        self._access = access

    @staticmethod
    def refuse_api_key(command: DeleteAccount) -> None:
        """``ApiKeyNotAllowed`` when an API key asks: the entrypoint asks it before it counts
        the attempt against the login limit (a key's attempt spends no password attempt)."""
        if command.api_key_id is not None:
            raise ApiKeyNotAllowed("An API key cannot delete the account; sign in to do it.")

    async def execute(self, command: DeleteAccount) -> None:
        self.refuse_api_key(command)
        user = await self._confirmed(command)
        async with self._uow as uow:
            if user.is_admin:
                await uow.users.lock_admins()  # before the account: the order UpdateUser takes
            try:
                fresh = await uow.users.get_for_delete(user.id)
            except UserNotFound:
                raise InvalidCredentials() from None
            # changed since the check (its password, disabled): confirmed for another state
            if fresh.disabled or fresh.password_hash != user.password_hash:
                raise InvalidCredentials()
            if fresh.is_admin and not user.is_admin:
                await uow.users.lock_admins()  # promoted meanwhile
            if fresh.is_admin and await uow.users.count_admins() <= 1:
                raise LastAdmin("You are the last active admin; appoint another admin first.")
            doomed = await self._owned_alone(uow, fresh.id)
            keys = set(await uow.attachments.object_keys_for_user(fresh.id))
            unfinished: set[UUID] = set()
            if self._stopper is not None:
                unfinished.update(await uow.chats.unfinished_replies_of_user(fresh.id))
            for project in doomed:
                keys.update(await uow.attachments.object_keys_for_project(project.id))
                if self._stopper is not None:
                    unfinished.update(await uow.chats.unfinished_replies_in_project(project.id))
                await uow.projects.delete(project.id)
            await uow.users.delete(fresh.id)
            if self._access is not None:  # refused (nothing saved) if it could not reach all
                await self._access.prepare(fresh.id)
            await uow.commit()
        if self._access is not None:
            await self._access.ended(fresh.id)
        if self._stopper is not None:
            await self._stopper.stop(unfinished, of=f"deleted account {fresh.id}")
        await delete_objects(self._blobs, sorted(keys), of="a deleted account")

    async def _confirmed(self, command: DeleteAccount) -> User:
        async with self._uow.read_only() as uow:
            try:
                user: User | None = await uow.users.get(command.user_id)
            except UserNotFound:
                user = None
        if user is not None and user.password_hash is None:
            _check_email(user, command.email)
            await self._check_recent_sign_in(command.session_id)
            return user
        if command.password is None:
            raise InvalidInput("Confirm the deletion with your password.", field="password")
        try:
            return await check_password(self._hasher, user, command.password)
        except InvalidCredentials:
            raise InvalidCredentials("The password is not correct.", field="password") from None

    async def _check_recent_sign_in(self, session_id: UUID | None) -> None:
        signed_in_at = None
        if session_id is not None and self._clock is not None:
            async with self._uow.read_only() as uow:
                signed_in_at = await uow.refresh_tokens.signed_in_at(session_id)
        if (
            signed_in_at is None
            or self._clock is None
            or signed_in_at < self._clock.now() - RECENT_SIGN_IN
        ):
            raise ReauthenticationRequired(
                "This account has no password: sign in again with your provider, then delete "
                "it within 10 minutes."
            )

    @staticmethod
    async def _owned_alone(uow: UnitOfWork, user_id: UUID) -> list[Project]:
        """The projects ``user_id`` owns, locked; ``OwnsSharedProjects`` if any of them but
        the personal one has another member."""
        owned: list[Project] = []
        for listed in sorted(await uow.projects.list_owned(user_id), key=lambda p: p.id):
            try:
                project = await uow.projects.get_for_update(listed.id)  # fixed order: no deadlock
            except ProjectNotFound:
                continue  # deleted meanwhile
            if project.owner_id == user_id:  # (not handed over meanwhile)
                owned.append(project)
        shared: list[UUID] = []
        for project in owned:
            if project.personal:
                continue
            members = await uow.projects.list_members(project.id)
            if any(m.user_id != user_id for m in members):
                shared.append(project.id)
        if shared:
            raise OwnsSharedProjects(project_ids=[str(i) for i in shared])
        return owned


def _check_email(user: User, typed: str | None) -> None:
    if typed is None:
        raise InvalidInput(
            "This account has no password: confirm the deletion with its email address.",
            field="email",
        )
    try:
        same = normalize_email(typed) == normalize_email(user.email)
    except InvalidEmail:
        same = False
    if not same:
        raise InvalidInput("That is not this account's email address.", field="email")
