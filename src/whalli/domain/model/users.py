"""Accounts: roles, plans and the disabled flag."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import idna

from whalli.domain.model.base import Entity
from whalli.domain.model.chats import SYSTEM_PROMPT_MAX, clean_instructions
from whalli.domain.model.errors import InvalidEmail, InvalidInput


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
DOMAIN_LABEL_MAX_LENGTH = 63


_ACE_PREFIX = "xn--"
# Dots IDNA reads as the label separator (UTS #46): the ideographic full stop (NFKC makes the
# fullwidth and halfwidth ones either "." or this one).
_IDEOGRAPHIC_STOPS = str.maketrans({"\u3002": "."})
ADDRESS_MAX_OCTETS = 254  # RFC 5321's path limit, the domain in ASCII


def normalize_email(raw: str) -> str:
    """Trim, NFKC-normalize and lower-case an address; raise ``InvalidEmail`` (naming
    ``email``) if it is not one, or holds a control or format character (NUL included).

    The domain has at least two labels, each of 1 to ``DOMAIN_LABEL_MAX_LENGTH`` octets in
    its ASCII form (RFC 1035), the whole address at most ``ADDRESS_MAX_OCTETS`` so spelt: a
    leading, trailing or doubled dot would spell one mailbox several ways. For the same reason
    an internationalized domain is kept in Unicode: a label in its ASCII form (an A-label,
    ``xn--`` and Punycode) is decoded, so ``x@xn--bcher-kva.example`` and ``x@bücher.example``
    are one address, and an ideographic full stop is a dot. A non-ASCII label must be a valid
    IDNA 2008 label (no invisible or space-like code point, which would let two accounts look
    alike), and an A-label the exact encoding of one."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    local, at, domain = email.rpartition("@")
    email = f"{local}{at}{domain.translate(_IDEOGRAPHIC_STOPS)}"
    if len(email) > ADDRESS_MAX_OCTETS or not _EMAIL.match(email) or _has_control(email):
        raise InvalidEmail(field="email")
    local, _, domain = email.rpartition("@")
    labels = [_unicode_label(label) for label in domain.split(".")]
    email = f"{local}@{'.'.join(labels)}"
    ascii_length = len(local.encode()) + 1 + sum(len(_ascii_label(x)) + 1 for x in labels) - 1
    if ascii_length > ADDRESS_MAX_OCTETS or not _EMAIL.match(email) or _has_control(email):
        raise InvalidEmail(field="email")
    return email


def email_spellings(email: str) -> tuple[str, ...]:
    """The ways a normalized address may be stored: as ``normalize_email`` gives it, then, for
    an internationalized domain, with its labels in ASCII (A-labels), as accounts registered
    before domains were decoded may hold it. A lookup by address tries every spelling."""
    local, _, domain = email.rpartition("@")
    ascii_domain = ".".join(_ascii_label(label) for label in domain.split("."))
    if ascii_domain == domain:
        return (email,)
    return (email, f"{local}@{ascii_domain}")


def _unicode_label(label: str) -> str:
    """The label in Unicode, checked: ``InvalidEmail`` if it is empty, too long in ASCII, not
    a valid IDNA 2008 label, or an A-label that is not the encoding of a normalized one."""
    if label.startswith(_ACE_PREFIX):
        try:
            decoded = label[len(_ACE_PREFIX) :].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            raise InvalidEmail(field="email") from None
        canonical = unicodedata.normalize("NFKC", decoded).lower()
        if canonical.isascii() or canonical != decoded or _ascii_label(canonical) != label:
            raise InvalidEmail(field="email")  # not the one ASCII spelling of a Unicode label
        label = canonical
    if not label.isascii():
        try:
            idna.alabel(label)  # IDNA 2008: code points, joiners, bidi, its length in ASCII
        except idna.IDNAError:
            raise InvalidEmail(field="email") from None
    if not 0 < len(_ascii_label(label)) <= DOMAIN_LABEL_MAX_LENGTH:
        raise InvalidEmail(field="email")
    return label


def _ascii_label(label: str) -> str:
    if label.isascii():
        return label
    return _ACE_PREFIX + label.encode("punycode").decode("ascii")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


USER_NAME_MAX_LENGTH = 200


def clean_user_name(name: str) -> str:
    """A display name as stored: trimmed and cut to ``USER_NAME_MAX_LENGTH``; may be empty; no
    control character (NUL included: ``InvalidInput`` naming ``name``)."""
    if any(unicodedata.category(ch) == "Cc" for ch in name.strip()):
        raise InvalidInput(
            "A name may not contain control characters (NUL included).", field="name"
        )
    return name.strip()[:USER_NAME_MAX_LENGTH]


def clean_external_name(name: str | None) -> str:
    """A display name someone else chose (an OAuth provider's), made storable instead of
    refused, since the user never typed it here: every control character (``Cc``) becomes a
    space, runs of whitespace become one space, the ends are trimmed and the result cut to
    ``USER_NAME_MAX_LENGTH``. May be empty: the caller falls back as for a missing name."""
    spaced = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in name or "")
    return " ".join(spaced.split())[:USER_NAME_MAX_LENGTH].rstrip()


# A user's custom instructions: the system prompt a new chat of theirs gets when its start gives
# none. The limit and cleaning rules are a chat's system prompt's.
CUSTOM_INSTRUCTIONS_MAX = SYSTEM_PROMPT_MAX


def clean_custom_instructions(text: str | None) -> str | None:
    """Custom instructions as stored: a chat's system prompt's rules
    (``chats.clean_instructions``), errors naming ``customInstructions``."""
    return clean_instructions(text, field="customInstructions", name="Custom instructions")


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
    # Whether the user has custom instructions. Only this flag travels with the account (it is
    # read on every authenticated request); the text is read by whoever needs it
    # (``UserRepository.get_custom_instructions``) and changed by ``set_custom_instructions``.
    has_custom_instructions: bool = False

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

    def note_custom_instructions(self, present: bool, now: datetime) -> None:
        """Record that the user's custom instructions were set (``present``) or cleared."""
        self.has_custom_instructions = present
        self.updated_at = now

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN and not self.disabled
