"""Storage of accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.users import User


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Store a new user, without custom instructions (``has_custom_instructions`` reads
        back false). Raises ``EmailAlreadyRegistered`` if the email is taken."""
        ...

    async def get(self, user_id: UUID) -> User:
        """Raises ``UserNotFound``."""
        ...

    async def get_for_update(self, user_id: UUID) -> User:
        """Like ``get``, and lock the account until the unit of work ends.

        A second unit of work calling it waits for the first to end, then reads the account as
        committed: changes that check the stored account first (the password, in
        ``ChangePassword``) run one after the other. Rows referring to the user (sessions,
        projects, ...) can still be added by others meanwhile. Raises ``UserNotFound``."""
        ...

    async def get_for_delete(self, user_id: UUID) -> User:
        """Like ``get_for_update``, and also hold off every new row referring to the account
        (a session, a project, a chat, a file, a membership...) until the unit of work ends:
        they wait, then fail with ``UserNotFound`` once its deletion commits, so that what the
        deleting unit of work read of the account's rows stays all there is. Raises
        ``UserNotFound``."""
        ...

    async def lock_sessions(self, user_id: UUID) -> None:
        """Hold the account, shared, until the unit of work ends: a session refresh takes it
        before its token, so it and a revocation of every session (which takes
        ``get_for_update`` first) run one after the other, and the revocation sees the token
        the refresh adds. Refreshes do not wait for each other. Raises ``UserNotFound``."""
        ...

    async def find_with_session(
        self, user_id: UUID, session_id: UUID, now: datetime
    ) -> tuple[User, bool] | None:
        """The user and whether its session is active at ``now``, in one read; ``None`` if
        there is no such user. The session is the refresh-token family ``session_id``, active
        as ``RefreshTokenRepository.family_is_active`` tells."""
        ...

    async def find_with_session_end(
        self, user_id: UUID, session_id: UUID
    ) -> tuple[User, datetime | None] | None:
        """The user and when its session ends, in one read; ``None`` if there is no such user.
        The end is the latest expiry of the family's unrevoked refresh tokens (``None``: none
        is left): the session is active at ``now`` while ``now`` is before it, as
        ``find_with_session`` tells. A refresh may later push the end on; a revocation ends
        it sooner, which the reader cannot see from this read."""
        ...

    async def find_by_email(self, email: str) -> User | None:
        """Look up by normalized email (``normalize_email``), under each of its
        ``email_spellings``: the normalized one is preferred."""
        ...

    async def update(self, user: User) -> None:
        """Persist changed fields (not the custom instructions: ``set_custom_instructions``).
        Raises ``UserNotFound``."""
        ...

    async def delete(self, user_id: UUID) -> None:
        """Delete the account and every row referring to it (its sessions, API keys, OAuth
        identities, memberships, chats, files, usage, presets, feedback, shared links...).
        Refused with ``Conflict`` while a project still has it as ``owner_id`` (those go
        first). Raises ``UserNotFound``."""
        ...

    async def get_custom_instructions(self, user_id: UUID) -> str | None:
        """The user's custom instructions, ``None`` if they have none. Only this reads them:
        every other read of an account carries just ``User.has_custom_instructions``, so that
        authenticating a request never loads the text. Raises ``UserNotFound``."""
        ...

    async def set_custom_instructions(self, user_id: UUID, text: str | None, now: datetime) -> None:
        """Store the user's custom instructions (cleaned: ``clean_custom_instructions``), or
        clear them with ``None``, in one statement; the account's ``updated_at`` becomes
        ``now`` and its ``has_custom_instructions`` follows. ``update`` leaves both the text
        and the flag as stored. Raises ``UserNotFound``."""
        ...

    async def count_admins(self) -> int:
        """Accounts that can act as admins: role admin and not disabled."""
        ...

    async def lock_admins(self) -> None:
        """Lock the rows of the active admins until the unit of work ends, in a fixed order.

        A second unit of work calling it waits for the first to end, then sees the admins as
        committed: changes that may remove an admin run one after the other, so two admins
        demoting each other at once cannot both see the other one still counted."""
        ...

    async def search(self, query: str = "", *, limit: int = 50, offset: int = 0) -> list[User]:
        """Users whose email or name contains ``query`` (case-insensitive), oldest first."""
        ...

    async def count(self, query: str = "") -> int:
        """How many users ``search`` would page through."""
        ...
