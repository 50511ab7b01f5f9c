"""``whalli users create``: make an account from the command line (the only way to make an admin).

The password is prompted for (twice, not echoed) on a terminal, read from the first line of
standard input otherwise (``printf '%s\\n' "$PW" | whalli users create ...``), or, last resort,
given with ``--password`` (which shell history and the process list can see).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import inspect
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TextIO, cast

from whalli.domain.model.users import Plan, User
from whalli.domain.services.auth.create_user import CreateUser, CreateUserHandler

HandlerFactory = Callable[[], AbstractAsyncContextManager[CreateUserHandler]]


class PasswordMismatch(Exception):
    pass


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``users create`` to the ``whalli`` command's subparsers."""
    users = subparsers.add_parser("users", help="manage accounts")
    actions = users.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create an account; --admin makes an administrator")
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="")
    create.add_argument("--admin", action="store_true", help="make the account an administrator")
    create.add_argument("--plan", choices=[p.value for p in Plan], default=Plan.FREE.value)
    create.add_argument(
        "--password",
        help="the password (visible in shell history and the process list: prefer the prompt "
        "or standard input)",
    )
    create.set_defaults(handler=create_user)


def read_password(
    given: str | None,
    stdin: TextIO,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str:
    """``--password`` if given; else prompt twice on a terminal; else the first stdin line."""
    if given is not None:
        return given
    if stdin.isatty():
        first = prompt("Password: ")
        if prompt("Repeat the password: ") != first:
            raise PasswordMismatch("The passwords do not match.")
        return first
    return stdin.readline().rstrip("\r\n")


def create_user(
    args: argparse.Namespace,
    *,
    handler_factory: HandlerFactory | None = None,
    stdin: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    try:
        password = read_password(args.password, stdin or sys.stdin, prompt)
    except PasswordMismatch as e:
        print(f"whalli: {e}", file=sys.stderr)
        return 2
    command = CreateUser(
        email=args.email, password=password, name=args.name, admin=args.admin,
        plan=Plan(args.plan),
    )  # fmt: skip
    user = asyncio.run(_create(command, handler_factory or _container_handler))
    print(f"created {user.role.value} {user.email} (id {user.id})")
    return 0


async def _create(command: CreateUser, handler_factory: HandlerFactory) -> User:
    async with handler_factory() as handler:
        return await handler.execute(command)


@asynccontextmanager
async def _container_handler() -> AsyncIterator[CreateUserHandler]:
    """The use case on the configured database; opens only the Postgres pool (and the HTTP
    client when the breached-password screen needs it)."""
    from dependency_injector import providers

    from whalli.container import build_container
    from whalli.entrypoints.cli.environment import resolved_settings

    container = build_container(resolved_settings())
    pool = cast("providers.Resource[Any]", container.gateways.postgres)
    # opened only when the breached-password screen is configured (WHALLI_PWNED_PASSWORDS_URL)
    http = cast("providers.Resource[Any]", container.gateways.http)
    await _resolved(pool.init())
    try:
        handler = await _resolved(container.services.create_user())
        assert isinstance(handler, CreateUserHandler)
        yield handler
    finally:
        await _resolved(http.shutdown())
        await _resolved(pool.shutdown())


async def _resolved(value: Any) -> Any:
    # dependency-injector hands back awaitables for providers that depend on async resources.
    return await value if inspect.isawaitable(value) else value
