"""``whalli users create`` on the in-memory unit of work (the real database: integration)."""

from __future__ import annotations

import argparse
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.domain.model.errors import EmailAlreadyRegistered, InvalidPassword
from whalli.domain.model.users import Plan, Role, User
from whalli.domain.services.auth.create_user import CreateUserHandler
from whalli.entrypoints.cli import users

PASSWORD = "correct horse battery"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="whalli")
    users.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def _factory(store: MemoryStore) -> users.HandlerFactory:
    @asynccontextmanager
    async def open_handler() -> AsyncIterator[CreateUserHandler]:
        yield CreateUserHandler(
            InMemoryUnitOfWork(store),
            hasher=FastPasswordHasher(),
            screen=CommonPasswordList(),
            clock=ManualClock(),
            ids=SequentialIds(start=len(store.tables["users"]) + 1),
        )

    return open_handler


def _users(store: MemoryStore) -> list[User]:
    return list(store.tables["users"].values())


def test_create_admin_reads_the_password_from_stdin_when_not_a_terminal(
    store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse("users", "create", "--admin", "--email", "Root@Example.com", "--name", "Root")

    code = users.create_user(
        args, handler_factory=_factory(store), stdin=io.StringIO(PASSWORD + "\n")
    )

    assert code == 0
    [user] = _users(store)
    assert (user.email, user.name, user.role, user.plan) == (
        "root@example.com", "Root", Role.ADMIN, Plan.FREE,
    )  # fmt: skip
    assert FastPasswordHasher().verify(user.password_hash or "", PASSWORD)
    out = capsys.readouterr().out
    assert "created admin root@example.com" in out
    assert PASSWORD not in out


def test_without_admin_the_account_is_a_plain_user_on_the_chosen_plan(store: MemoryStore) -> None:
    args = _parse("users", "create", "--email", "a@example.com", "--plan", "pro")

    users.create_user(args, handler_factory=_factory(store), stdin=io.StringIO(PASSWORD))

    [user] = _users(store)
    assert (user.role, user.plan) == (Role.USER, Plan.PRO)


def test_on_a_terminal_the_password_is_prompted_twice_and_must_match(
    store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse("users", "create", "--email", "a@example.com")
    answers = iter([PASSWORD, "something else"])

    code = users.create_user(
        args, handler_factory=_factory(store), stdin=Tty(), prompt=lambda _: next(answers)
    )

    assert code == 2
    assert "do not match" in capsys.readouterr().err
    assert _users(store) == []


def test_the_password_flag_and_the_policy_and_a_taken_email(store: MemoryStore) -> None:
    create = ("users", "create", "--email", "a@example.com", "--password")
    users.create_user(_parse(*create, PASSWORD), handler_factory=_factory(store))

    with pytest.raises(InvalidPassword, match="at least 8"):
        users.create_user(_parse(*create, "short"), handler_factory=_factory(store))
    with pytest.raises(InvalidPassword, match="most common passwords"):
        users.create_user(_parse(*create, "Password123"), handler_factory=_factory(store))
    with pytest.raises(EmailAlreadyRegistered, match="already exists"):
        users.create_user(_parse(*create, PASSWORD), handler_factory=_factory(store))
    assert len(_users(store)) == 1
