"""Accounts: roles, plans and the disabled flag."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from whalli.domain.model.base import Entity
from whalli.domain.model.errors import InvalidEmail


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"

    @property
    def rank(self) -> int:
        return _PLAN_ORDER.index(self)

    def includes(self, minimum: Plan) -> bool:
        """A plan includes everything offered to the plans below it."""
        return self.rank >= minimum.rank


_PLAN_ORDER = [Plan.FREE, Plan.PRO, Plan.ENTERPRISE]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def normalize_email(raw: str) -> str:
    """Trim, NFKC-normalize and lower-case an address; raise ``InvalidEmail`` if it is not one."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidEmail()
    return email


USER_NAME_MAX_LENGTH = 200


def clean_user_name(name: str) -> str:
    """A display name as stored: trimmed and cut to ``USER_NAME_MAX_LENGTH``; may be empty."""
    return name.strip()[:USER_NAME_MAX_LENGTH]


class User(Entity, kw_only=True):
    id: UUID
    email: str
    name: str = ""
    password_hash: str | None = None
    role: Role = Role.USER
    plan: Plan = Plan.FREE
    disabled: bool = False
    email_verified: bool = False
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        email: str,
        now: datetime,
        name: str = "",
        password_hash: str | None = None,
        role: Role = Role.USER,
        plan: Plan = Plan.FREE,
        email_verified: bool = False,
    ) -> User:
        return cls(
            id=id,
            email=normalize_email(email),
            name=clean_user_name(name),
            password_hash=password_hash,
            role=role,
            plan=plan,
            email_verified=email_verified,
            created_at=now,
            updated_at=now,
        )

    def rename(self, name: str, now: datetime) -> bool:
        """Set the display name (see ``clean_user_name``); whether it changed."""
        cleaned = clean_user_name(name)
        if cleaned == self.name:
            return False
        self.name = cleaned
        self.updated_at = now
        return True

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN and not self.disabled
