"""``whalli users create`` through the real composition root, on the real database."""

from __future__ import annotations

import argparse
import io

import pytest

from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.errors import EmailAlreadyRegistered
from whalli.entrypoints.cli import users


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="whalli")
    users.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_creating_an_admin_stores_it_in_the_configured_database(
    stack_urls: StackUrls,
    migrated_database_url: str,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "WHALLI_DATABASE_URL": migrated_database_url,
        "WHALLI_REDIS_URL": stack_urls.redis_url,
        "WHALLI_S3_ENDPOINT": stack_urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": stack_urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": stack_urls.s3_secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    args = _parse("users", "create", "--admin", "--email", f"root-{unique}@example.com")

    code = users.create_user(args, stdin=io.StringIO("correct horse battery\n"))

    assert code == 0
    assert f"created admin root-{unique}@example.com" in capsys.readouterr().out
    with pytest.raises(EmailAlreadyRegistered, match="already exists"):
        users.create_user(args, stdin=io.StringIO("correct horse battery\n"))
