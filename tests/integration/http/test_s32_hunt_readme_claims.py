"""Hunt S32 of the README's claims added since a833f19 (forgotten passwords, address
verification, the development outbox and what `make run` sets up), against the app on the real
stack (Postgres, Redis, S3; the worker's side of a request run here on the same container) and
the code that sets `make run`'s environment."""

from __future__ import annotations

import re
import stat
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_flow import Chat
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.config import load_settings
from whalli.domain.model.jobs import SendEmailVerification, SendPasswordReset
from whalli.entrypoints.cli.environment import development_outbox

ROOT = Path(__file__).parents[3]
FLAT = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
WEB_URL = "https://chat.whalli.test"


def _readme_between(start: str, end: str) -> str:
    found = re.search(f"{re.escape(start)}(.*?){re.escape(end)}", FLAT)
    assert found is not None, (start, end)  # the README still says it
    return found.group(1)


# --- the verification route on a server that sends no email ---------------------------------


async def test_a_verification_asked_of_a_server_without_email_is_the_422_the_readme_names(
    chat: Chat,
) -> None:
    ada = await chat.world.register("ada")

    asked = await chat.client.post("/api/auth/email/verify", headers=ada["auth"])

    assert asked.status_code == 422, asked.text
    # "POST /api/auth/email/verify (202; 409 ...; the same 422 without a mail server)" read as
    # the reset's password_reset_not_configured: the route answers a code of its own.
    said = _readme_between("`POST /api/auth/email/verify` (", ")")
    assert f"`{asked.json()['code']}`" in said, said


# --- the development outbox, on the real stack --------------------------------------------


@pytest.fixture
async def outbox(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[tuple[Chat, Path]]:
    folder = tmp_path / "outbox"
    async with chat_app(
        stack_urls, unique, WHALLI_EMAIL_OUTBOX_DIR=str(folder), WHALLI_WEB_URL=WEB_URL,
        WHALLI_PASSWORD_RESET_TTL_S="330", WHALLI_EMAIL_VERIFICATION_TTL_S="600",
    ) as chat:  # fmt: skip
        yield chat, folder


def _last_mail(folder: Path) -> str:
    written = sorted(folder.glob("*.eml"))
    assert written, list(folder.iterdir())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # "owner-only"
    assert stat.S_IMODE(written[-1].stat().st_mode) == 0o600
    text: str = message_from_bytes(written[-1].read_bytes(), policy=policy.default).get_content()
    return text


async def test_emailed_links_tell_the_lifetime_their_settings_give_them_never_more(
    outbox: tuple[Chat, Path],
) -> None:
    """WHALLI_EMAIL_VERIFICATION_TTL_S=600 makes a link of 10 minutes: its email said "it
    works for 1 hours" (hours rounded, at least 1), six times what it gives; a reset link of
    330 s was "for 6 minutes"."""
    chat, folder = outbox
    ada = await chat.world.register("ada")
    # No SMTP server, the outbox alone: a forgotten password works (README, `make run`).
    asked = await chat.client.post("/api/auth/password/forgot", json={"email": ada["email"]})
    assert asked.status_code == 202, asked.text
    send = await resolved(chat.world.container.services.send_password_reset())
    await send.execute(SendPasswordReset(email=ada["email"], requested_at=datetime.now(UTC)))
    reset_mail = _last_mail(folder)
    verify = await chat.client.post("/api/auth/email/verify", headers=ada["auth"])
    assert verify.status_code == 202, verify.text
    send_link = await resolved(chat.world.container.services.send_email_verification())
    job = SendEmailVerification(
        user_id=uuid.UUID(ada["user"]["id"]), requested_at=datetime.now(UTC)
    )
    await send_link.execute(job)
    verify_mail = _last_mail(folder)

    assert f"{WEB_URL}/reset-password#token=" in reset_mail
    assert "for 5 minutes" in reset_mail, reset_mail
    assert f"{WEB_URL}/verify-email#token=" in verify_mail
    assert "for 10 minutes" in verify_mail, verify_mail


# --- what `make run` (whalli dev) sets up ---------------------------------------------------


def test_make_run_writes_emails_to_the_outbox_folder_a_dotenv_names(tmp_path: Path) -> None:
    """`whalli dev` gave its API and worker WHALLI_EMAIL_OUTBOX_DIR=.whalli/outbox unless the
    process environment named one: a folder set in `.env` (read by every process, but below
    the environment) was overridden, and the emails went elsewhere."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"WHALLI_EMAIL_OUTBOX_DIR={tmp_path / 'mail'}\n", encoding="utf-8")
    settings = load_settings({}, dotenv=dotenv)

    children = load_settings(development_outbox(settings), dotenv=dotenv)  # (env wins)

    assert children.email_outbox_dir == str(tmp_path / "mail")


def test_make_run_writes_emails_under_its_data_folder_without_a_mail_server() -> None:
    default = development_outbox(load_settings({}, dotenv=None))
    with_smtp = load_settings(
        {"WHALLI_SMTP_HOST": "mail.example.com", "WHALLI_SMTP_FROM": "a@example.com"}, dotenv=None
    )

    assert default == {"WHALLI_EMAIL_OUTBOX_DIR": str(Path(".whalli") / "outbox")}
    assert development_outbox(with_smtp) == {}
