"""The ``whalli`` command: services, migrate, serve, worker, dev."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from whalli.config import ConfigError
from whalli.domain.model.errors import WhalliError
from whalli.entrypoints.cli import commands, users
from whalli.entrypoints.cli.environment import ServicesNotRunning


def _in_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whalli", description="Whalli chat backend")
    sub = parser.add_subparsers(dest="command", required=True)

    services = sub.add_parser("services", help="the embedded Postgres, Redis and S3")
    services.add_argument("action", choices=["up", "down", "status"])
    services.set_defaults(handler=commands.services)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--status", action="store_true", help="list migrations, apply nothing")
    migrate.set_defaults(handler=commands.migrate)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=_in_range(1, 65535), help="default WHALLI_PORT")
    serve.add_argument(
        "--workers", type=_in_range(1, 256), help="API processes (default WHALLI_WEB_WORKERS)"
    )
    serve.set_defaults(handler=commands.serve)

    worker = sub.add_parser("worker", help="run a background job worker")
    worker.set_defaults(handler=commands.worker)

    dev = sub.add_parser("dev", help="embedded services + migrations + API + worker (make run)")
    dev.set_defaults(handler=commands.dev)

    users.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, ServicesNotRunning, WhalliError) as e:
        print(f"whalli: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
