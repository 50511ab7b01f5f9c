"""The password screens: the bundled list of common passwords, Have I Been Pwned's range API
(against a loopback server speaking its wire format), and the chain of both."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.pwned_passwords import FakePwnedPasswords, sha1_hex
from whalli.adapters.memory.password_screen import ListedPasswordScreen
from whalli.adapters.passwords.chain import PasswordScreenChain
from whalli.adapters.passwords.common_list import CommonPasswordList, common_passwords
from whalli.adapters.passwords.pwned_range import PwnedPasswordsScreen
from whalli.domain.model.passwords import PasswordExposure

COMMON, BREACHED = PasswordExposure.COMMON, PasswordExposure.BREACHED


# --- the offline list ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "password", ["password123", "qwertyuiop", "iloveyou", "trustno1", "1qaz2wsx", "passw0rd"]
)
async def test_well_known_common_passwords_are_on_the_list(password: str) -> None:
    assert await CommonPasswordList().screen(password) is COMMON


@pytest.mark.parametrize("password", ["Password123", "QWERTYUIOP", "iLoveYou", "TrustNo1"])
async def test_the_list_is_compared_case_insensitively(password: str) -> None:
    assert await CommonPasswordList().screen(password) is COMMON


@pytest.mark.parametrize(
    "password", ["correct horse battery", "password123!x", "qwertyuiop ", "ÿ" * 10]
)
async def test_a_password_off_the_list_passes(password: str) -> None:
    assert await CommonPasswordList().screen(password) is None
    assert await CommonPasswordList().screen(secrets.token_urlsafe(16)) is None


def test_the_list_covers_far_more_than_the_top_3000_and_is_loaded_once() -> None:
    passwords = common_passwords()
    assert isinstance(passwords, frozenset)
    assert len(passwords) >= 3000
    assert common_passwords() is passwords
    assert all(p == p.casefold() for p in passwords)


# --- Have I Been Pwned's range API ---------------------------------------------------------------
@pytest.fixture(scope="module")
def hibp() -> Iterator[FakePwnedPasswords]:
    server = FakePwnedPasswords().start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fresh() -> str:
    return f"pwned-test-{secrets.token_hex(8)}"


async def test_a_breached_password_is_found_from_its_hash_prefix_alone(
    hibp: FakePwnedPasswords, client: httpx.AsyncClient
) -> None:
    password = _fresh()
    hibp.breach(password, 37)
    seen = len(hibp.requests)

    assert await PwnedPasswordsScreen(client, base_url=hibp.url + "/").screen(password) is BREACHED

    [request] = hibp.requests[seen:]
    assert request.path == f"/range/{sha1_hex(password)[:5]}"  # five upper-case hex digits
    assert request.headers["add-padding"] == "true"
    assert password not in str(request)
    assert sha1_hex(password)[5:] not in str(request).upper()


async def test_a_password_not_in_the_range_is_not_breached(
    hibp: FakePwnedPasswords, client: httpx.AsyncClient
) -> None:
    hibp.breach(_fresh())  # other breaches exist

    assert await PwnedPasswordsScreen(client, base_url=hibp.url).screen(_fresh()) is None


async def test_padding_lines_with_count_zero_are_not_breaches(
    hibp: FakePwnedPasswords, client: httpx.AsyncClient
) -> None:
    password = _fresh()
    hibp.padding_for(password)

    assert await PwnedPasswordsScreen(client, base_url=hibp.url).screen(password) is None


@pytest.mark.parametrize("down", ["closed port", "503"])
async def test_an_unavailable_service_fails_open_with_a_warning_that_reveals_nothing(
    hibp: FakePwnedPasswords, client: httpx.AsyncClient, down: str
) -> None:
    password = _fresh()
    hibp.breach(password)
    base_url = f"http://127.0.0.1:{_unused_port()}" if down == "closed port" else hibp.url
    hibp.failing = down == "503"
    try:
        with capture_logs() as logs:
            found = await PwnedPasswordsScreen(client, base_url=base_url).screen(password)
    finally:
        hibp.failing = False

    assert found is None
    [warning] = [e for e in logs if e["event"] == "pwned_passwords_unavailable"]
    assert warning["log_level"] == "warning"
    assert warning["reason"] == ("HTTP 503" if down == "503" else "ConnectError")
    text = str(logs).upper()
    assert password.upper() not in text
    assert sha1_hex(password)[:5] not in text


# --- the chain ------------------------------------------------------------------------------------
async def test_the_chain_answers_common_offline_and_asks_the_service_about_the_rest(
    hibp: FakePwnedPasswords, client: httpx.AsyncClient
) -> None:
    breached = _fresh()
    hibp.breach(breached, 3)
    hibp.breach("password123", 2_000_000)
    chain = PasswordScreenChain(
        [CommonPasswordList(), PwnedPasswordsScreen(client, base_url=hibp.url)]
    )
    seen = len(hibp.requests)

    assert await chain.screen("Password123") is COMMON
    assert len(hibp.requests) == seen  # refused without a network call
    assert await chain.screen(breached) is BREACHED
    assert await chain.screen(_fresh()) is None
    assert len(hibp.requests) == seen + 2


async def test_the_first_screen_with_a_finding_wins() -> None:
    first = ListedPasswordScreen(breached=["both lists 1"])
    second = ListedPasswordScreen(common=["both lists 1", "second only 1"])
    chain = PasswordScreenChain([first, second])

    assert await chain.screen("both lists 1") is BREACHED
    assert await chain.screen("second only 1") is COMMON
    assert await chain.screen("neither list 1") is None
    assert (first.screened, second.screened) == (3, 2)
