"""Use case: create an account from the command line (the only way to make an admin)."""

from __future__ import annotations

import msgspec

from whalli.domain.model.users import Plan, Role, User, normalize_email
from whalli.domain.services.auth.accounts import add_account, hash_new_password
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.password_screen import PasswordScreen
from whalli.ports.unit_of_work import UnitOfWork


class CreateUser(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    password: str
    name: str = ""
    admin: bool = False
    plan: Plan = Plan.FREE

    def __repr__(self) -> str:
        return masked_repr(self, "password")


class CreateUserHandler:
    """Create an account, optionally an administrator, with its personal project.

    Rules:
    - only the operator's CLI (``whalli users create``) reaches this use case: it is the one
      place an admin can be made; no HTTP route builds it;
    - the same email and password rules as sign-up (``InvalidEmail``, ``InvalidPassword``,
      common and breached passwords included: an admin's password least of all may be
      guessable), the password hashed off the event loop; the email counts as verified,
      since the operator typed it;
    - the user and their personal project in one unit of work; a taken email is
      ``EmailAlreadyRegistered``.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        hasher: PasswordHasher,
        screen: PasswordScreen,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._screen = screen
        self._clock = clock
        self._ids = ids

    async def execute(self, command: CreateUser) -> User:
        email = normalize_email(command.email)
        password_hash = await hash_new_password(self._hasher, self._screen, command.password)
        user = User.create(
            id=self._ids.new_id(),
            email=email,
            name=command.name,
            password_hash=password_hash,
            role=Role.ADMIN if command.admin else Role.USER,
            plan=command.plan,
            email_verified=True,
            now=self._clock.now(),
        )
        async with self._uow as uow:
            await add_account(uow, user)
            await uow.commit()
        return user
