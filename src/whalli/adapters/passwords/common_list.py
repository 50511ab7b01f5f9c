"""The most common passwords, from the ranked list the ``zxcvbn`` package ships (offline).

zxcvbn's ``passwords`` list holds the 30,000 most frequent passwords of a corpus of leaked
ones (Xato's ten million), lower-cased, far beyond ASVS V6.2.4's 3,000. zxcvbn files each
word under the one list where it ranks best, so a few names and English words that are also
common passwords (e.g. "michelle") sit in its name or word lists instead and are not checked
here; the breached-password screen catches them when it is on.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from pathlib import Path

from whalli.domain.model.passwords import PasswordExposure, normalize_password
from whalli.ports.password_screen import PasswordScreen


@functools.cache
def common_passwords() -> frozenset[str]:
    """The list, NFC-normalized and case-folded, loaded once per process on first use, which a
    process that never sets a password does not pay.

    Only zxcvbn's ``frequency_lists.py`` is run, as a module of its own: importing the package
    would also build every ranked dictionary its matchers use (~19 MB of RSS instead of ~7 MB
    here, measured), and the module is dropped once the password list is taken.
    """
    package = importlib.util.find_spec("zxcvbn")  # locates it without importing it
    if package is None or package.origin is None:
        raise RuntimeError("the zxcvbn package is not installed")
    path = Path(package.origin).with_name("frequency_lists.py")
    spec = importlib.util.spec_from_file_location("_whalli_zxcvbn_frequency_lists", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    words: list[str] = module.FREQUENCY_LISTS["passwords"]
    return frozenset(_key(word) for word in words)


def _key(password: str) -> str:
    return normalize_password(password).casefold()


class CommonPasswordList(PasswordScreen):
    """``COMMON`` for a password on the list, compared case-insensitively (``Password123`` is as
    guessable as ``password123``: guessers try the capitalized forms first)."""

    async def screen(self, password: str) -> PasswordExposure | None:
        if common_passwords.cache_info().currsize == 0:
            await asyncio.to_thread(common_passwords)  # the first load: off the event loop
        return PasswordExposure.COMMON if _key(password) in common_passwords() else None
