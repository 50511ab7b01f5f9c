"""What creating an account involves, shared by Register and CreateUser (and not a use case)."""

from __future__ import annotations

import asyncio

from whalli.domain.model.errors import EmailAlreadyRegistered, InvalidCredentials
from whalli.domain.model.passwords import PASSWORD_MAX_LENGTH, exposed_password, validate_password
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.users import User, email_spellings
from whalli.domain.services.projects.ensure_personal_project import (
    PERSONAL_PROJECT_NAME,
    personal_project_id,
)
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.password_screen import PasswordScreen
from whalli.ports.unit_of_work import UnitOfWork

# No valid password is longer (see domain.model.passwords); refusing early bounds the hash cost.
_MAX_PASSWORD_INPUT = 4 * PASSWORD_MAX_LENGTH


async def check_password(hasher: PasswordHasher, user: User | None, password: str) -> User:
    """``user`` if ``password`` is theirs and the account is enabled, else ``InvalidCredentials``.

    No account, an account without a password (OAuth only), an oversized input, a wrong
    password and a disabled account all fail alike and in about the same time: each pays for
    one verification (``dummy_verify`` when there is nothing to verify against), off the event
    loop, and the disabled flag is looked at only after it.
    """
    if user is None or user.password_hash is None or len(password) > _MAX_PASSWORD_INPUT:
        await asyncio.to_thread(hasher.dummy_verify)
        raise InvalidCredentials()
    ok = await asyncio.to_thread(hasher.verify, user.password_hash, password)
    if not ok or user.disabled:
        raise InvalidCredentials()
    return user


async def hash_new_password(hasher: PasswordHasher, screen: PasswordScreen, password: str) -> str:
    """Check the password policy (length, then the screen of common and breached passwords:
    ``InvalidPassword`` with rule ``common`` or ``breached``), then hash in a worker thread
    (argon2 is CPU-bound and slow; on the event loop it would stall every other request)."""
    normalized = validate_password(password)
    exposure = await screen.screen(normalized)
    if exposure is not None:
        raise exposed_password(exposure)
    return await asyncio.to_thread(hasher.hash, normalized)


async def add_account(uow: UnitOfWork, user: User) -> Project:
    """Store ``user`` and their personal project, inside the caller's unit of work.

    The project gets the same id and shape ``EnsurePersonalProject`` gives it, so a later
    ``EnsurePersonalProject`` finds it instead of creating another. Raises
    ``EmailAlreadyRegistered`` (now or at commit) when the email is taken, under any of its
    ``email_spellings`` (an internationalized domain's ASCII spelling, as older accounts hold it).
    """
    if len(email_spellings(user.email)) > 1 and await uow.users.find_by_email(user.email):
        raise EmailAlreadyRegistered()
    await uow.users.add(user)
    project = Project.create(
        id=personal_project_id(user.id),
        name=PERSONAL_PROJECT_NAME,
        owner_id=user.id,
        now=user.created_at,
        personal=True,
    )
    await uow.projects.add(project)
    await uow.projects.add_member(
        Membership(
            project_id=project.id,
            user_id=user.id,
            role=MemberRole.OWNER,
            created_at=user.created_at,
        )
    )
    return project
