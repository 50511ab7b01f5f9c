"""Password policy (OWASP ASVS 5.0, V6.2): length, measured in code points after NFC, and no
known-bad password.

- At least 8 characters (V6.2.1) and up to 128 accepted (V6.2.9 asks for at least 64).
- No composition rules: any printable or unprintable Unicode, spaces included (V6.2.5, V6.2.6),
  and the password is never truncated or trimmed (V6.2.6).
- Length is counted after NFC normalization, so "é" typed as one precomposed code point or as
  "e" plus a combining accent is the same password of the same length; the normalized form is
  what gets hashed, so either input method logs in.
- A new password must not be one of the most common passwords (V6.2.4: rule ``common``) nor
  one seen in a data breach (V6.2.12: rule ``breached``). Those lists live outside the domain:
  the use cases that set a password ask a ``PasswordScreen`` port about the normalized
  password, after ``validate_password`` and before hashing, and turn its answer into
  ``InvalidPassword`` with :func:`exposed_password`.

Every ``InvalidPassword`` names its rule in ``details["rule"]`` and never contains the password.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum

from whalli.domain.model.errors import InvalidPassword

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# NFC composes at most 4 code points into one, so a longer input cannot be a valid password;
# refusing it before normalizing keeps a huge input from costing anything.
_MAX_RAW_LENGTH = 4 * PASSWORD_MAX_LENGTH


def normalize_password(password: str) -> str:
    """The NFC form of ``password``: what is measured, hashed and verified."""
    return unicodedata.normalize("NFC", password)


def validate_password(password: str) -> str:
    """Return the normalized password, or raise ``InvalidPassword`` naming the broken rule.

    The error never contains the password.
    """
    if len(password) > _MAX_RAW_LENGTH:
        raise _too_long()
    normalized = normalize_password(password)
    length = len(normalized)  # a str's len counts code points
    if length < PASSWORD_MIN_LENGTH:
        raise InvalidPassword(
            f"Password must be at least {PASSWORD_MIN_LENGTH} characters.",
            rule="min_length",
            min_length=PASSWORD_MIN_LENGTH,
        )
    if length > PASSWORD_MAX_LENGTH:
        raise _too_long()
    return normalized


def _too_long() -> InvalidPassword:
    return InvalidPassword(
        f"Password must be at most {PASSWORD_MAX_LENGTH} characters.",
        rule="max_length",
        max_length=PASSWORD_MAX_LENGTH,
    )


class PasswordExposure(StrEnum):
    """Why a password is known to attackers (the ``rule`` of the ``InvalidPassword``)."""

    COMMON = "common"  # on a list of the most used passwords: tried first by any guesser
    BREACHED = "breached"  # in a corpus of passwords leaked by data breaches


_EXPOSED_MESSAGES = {
    PasswordExposure.COMMON: "That password is one of the most common passwords; choose another.",
    PasswordExposure.BREACHED: (
        "That password has appeared in a data breach, so attackers try it; choose another."
    ),
}


def exposed_password(exposure: PasswordExposure) -> InvalidPassword:
    """The error refusing a password known to attackers; it never contains the password."""
    return InvalidPassword(_EXPOSED_MESSAGES[exposure], rule=exposure.value)
