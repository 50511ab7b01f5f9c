"""Taking an account back with a mailed link (s32), on the real app (Postgres, Redis, a loopback
SMTP server, the worker's side run here on the queued request):

- a squatter signs up with someone else's address first, makes projects in the account, adds
  their own other account to them (and to its personal project), shares chats by link, and
  joins the account to projects of their own; the mailbox's owner then resets the password:
  that first proof of the mailbox leaves nobody else in the account's projects, no shared
  link of them open, and the account in no project it does not own. A verified account's
  reset keeps all of it.
- a reset or verification link sent before an admin disabled the account does not work
  again once the account is enabled again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import SendEmailVerification, SendPasswordReset
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

WEB_URL = "https://chat.whalli.test"
RESET_LINK = re.compile(rf"{re.escape(WEB_URL)}/reset-password#token=([A-Za-z0-9_.-]+)")
VERIFY_LINK = re.compile(rf"{re.escape(WEB_URL)}/verify-email#token=([A-Za-z0-9_.-]+)")
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, smtp: FakeSmtpServer
) -> AsyncIterator[Chat]:
    async with chat_app(
        stack_urls, unique, WHALLI_SMTP_HOST="127.0.0.1", WHALLI_SMTP_PORT=str(smtp.port),
        WHALLI_SMTP_TLS="none", WHALLI_SMTP_FROM="accounts@whalli.test", WHALLI_WEB_URL=WEB_URL,
    ) as chat:  # fmt: skip
        yield chat


# --- helpers ------------------------------------------------------------------------------------
def _auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


def _uid(person: dict[str, Any]) -> str:
    user_id: str = person["user"]["id"]
    return user_id


def _last_link(smtp: FakeSmtpServer, email: str, link: re.Pattern[str]) -> str:
    mailed = [m.parsed().get_content() for m in smtp.messages if m.rcpt_to == [email]]
    found = link.search(mailed[-1]) if mailed else None
    assert found is not None, mailed
    return found.group(1)


async def _reset_link(chat: Chat, smtp: FakeSmtpServer, email: str) -> str:
    """Ask for a reset, and do what the worker does with the request (mail the link)."""
    asked = await chat.client.post("/api/auth/password/forgot", json={"email": email})
    assert asked.status_code == 202, asked.text
    send = await resolved(chat.world.container.services.send_password_reset())
    await send.execute(SendPasswordReset(email=email, requested_at=datetime.now(UTC)))
    return _last_link(smtp, email, RESET_LINK)


async def _verify_link(chat: Chat, smtp: FakeSmtpServer, person: dict[str, Any]) -> str:
    asked = await chat.client.post("/api/auth/email/verify", headers=person["auth"])
    assert asked.status_code == 202, asked.text
    send = await resolved(chat.world.container.services.send_email_verification())
    job = SendEmailVerification(user_id=uuid.UUID(_uid(person)), requested_at=datetime.now(UTC))
    await send.execute(job)
    return _last_link(smtp, person["email"], VERIFY_LINK)


async def _reset(chat: Chat, token: str) -> Any:
    return await chat.client.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": NEW_PASSWORD}
    )


async def _new_chat(chat: Chat, auth: dict[str, str], project_id: str) -> str:
    started = await chat.start(
        auth, model="dev/echo", message=f"hi {uuid.uuid4()}", projectId=project_id
    )
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return str(started["chatId"])


async def _share(chat: Chat, auth: dict[str, str], chat_id: str) -> str:
    made = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=auth)
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


async def _members(chat: Chat, project_id: str, auth: dict[str, str]) -> dict[str, str]:
    listed = await chat.client.get(f"/api/projects/{project_id}/members", headers=auth)
    assert listed.status_code == 200, listed.text
    return {m["userId"]: m["role"] for m in listed.json()}


async def _add(chat: Chat, project_id: str, owner: dict[str, Any], member: dict[str, Any],
               role: str) -> None:  # fmt: skip
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": member["email"], "role": role}, headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text


async def _status(chat: Chat, path: str, auth: dict[str, str] | None = None) -> int:
    return (await chat.client.get(path, headers=auth or {})).status_code


async def _admin_sets_disabled(chat: Chat, admin: dict[str, str], person: dict[str, Any],
                               disabled: bool) -> None:  # fmt: skip
    changed = await chat.client.patch(
        f"/api/admin/users/{_uid(person)}", json={"disabled": disabled}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["disabled"] is disabled


async def _login(chat: Chat, email: str, password: str) -> Any:
    return await chat.client.post("/api/auth/login", json={"email": email, "password": password})


class Squatted:
    """What the squatter set up in ``ada`` (signed up with her address) with ``mallory``."""

    def __init__(self, chat: Chat, ada: dict[str, Any], mallory: dict[str, Any]) -> None:
        self.chat, self.ada, self.mallory = chat, ada, mallory
        self.personal = str(personal_project_id(uuid.UUID(_uid(ada))))
        self.mallorys_personal = str(personal_project_id(uuid.UUID(_uid(mallory))))
        self.team = self.theirs = self.chat_id = ""
        self.links: list[str] = []

    async def set_up(self) -> Squatted:
        chat, ada, mallory = self.chat, self.ada, self.mallory
        self.team = await team_project(chat, ada, mallory, "owner")
        await _add(chat, self.personal, ada, mallory, "viewer")
        self.chat_id = await _new_chat(chat, ada["auth"], self.team)
        personal_chat = await _new_chat(chat, ada["auth"], self.personal)
        self.links = [
            await _share(chat, ada["auth"], self.chat_id),
            await _share(chat, ada["auth"], personal_chat),
            await _share(chat, mallory["auth"], self.chat_id),
        ]
        self.theirs = await team_project(chat, mallory, ada, "owner")  # a co-owner there
        await _add(chat, self.mallorys_personal, mallory, ada, "editor")
        return self


# --- the projects of an account taken back ------------------------------------------------------
async def test_a_first_proof_reset_leaves_nobody_else_in_the_accounts_projects_nor_links_open(
    chat: Chat, smtp: FakeSmtpServer
) -> None:
    ada, mallory = await chat.world.register("ada"), await chat.world.register("mallory")
    squatted = await Squatted(chat, ada, mallory).set_up()
    assert all([await _status(chat, f"/api/shared/{t}") == 200 for t in squatted.links])

    reset = await _reset(chat, await _reset_link(chat, smtp, ada["email"]))

    assert reset.status_code == 200, reset.text
    owner = _auth(reset.json())
    for project_id in (squatted.team, squatted.personal):
        assert await _members(chat, project_id, owner) == {_uid(ada): "owner"}
        assert await _status(chat, f"/api/projects/{project_id}", mallory["auth"]) == 404
    assert await _status(chat, f"/api/chats/{squatted.chat_id}", owner) == 200
    assert await _status(chat, f"/api/chats/{squatted.chat_id}", mallory["auth"]) == 404
    assert [await _status(chat, f"/api/shared/{t}") for t in squatted.links] == [404, 404, 404]
    # and what she puts there later stays hers: no member is left to see it
    later = await _new_chat(chat, owner, squatted.team)
    assert await _status(chat, f"/api/chats/{later}", mallory["auth"]) == 404
    # she left the squatter's projects, which keep their owner
    listed = await chat.client.get("/api/projects", headers=owner)
    assert {p["id"] for p in listed.json()} == {squatted.team, squatted.personal}
    for project_id in (squatted.theirs, squatted.mallorys_personal):
        assert await _status(chat, f"/api/projects/{project_id}", owner) == 404
        assert await _members(chat, project_id, mallory["auth"]) == {_uid(mallory): "owner"}


async def test_a_verified_accounts_reset_keeps_its_members_links_and_memberships(
    chat: Chat, smtp: FakeSmtpServer
) -> None:
    ada, mallory = await chat.world.register("ada"), await chat.world.register("mallory")
    confirmed = await chat.client.post(
        "/api/auth/email/confirm", json={"token": await _verify_link(chat, smtp, ada)},
        headers=ada["auth"],
    )  # fmt: skip
    assert confirmed.status_code == 200, confirmed.text
    squatted = await Squatted(chat, ada, mallory).set_up()

    reset = await _reset(chat, await _reset_link(chat, smtp, ada["email"]))

    assert reset.status_code == 200, reset.text
    owner = _auth(reset.json())
    assert await _members(chat, squatted.team, owner) == {
        _uid(ada): "owner",
        _uid(mallory): "owner",
    }
    assert await _members(chat, squatted.personal, owner) == {
        _uid(ada): "owner", _uid(mallory): "viewer"
    }  # fmt: skip
    assert await _status(chat, f"/api/chats/{squatted.chat_id}", mallory["auth"]) == 200
    assert [await _status(chat, f"/api/shared/{t}") for t in squatted.links] == [200, 200, 200]
    listed = await chat.client.get("/api/projects", headers=owner)
    assert {p["id"] for p in listed.json()} == {
        squatted.team, squatted.personal, squatted.theirs, squatted.mallorys_personal
    }  # fmt: skip


# --- links sent before a disabling --------------------------------------------------------------
async def test_a_reset_link_sent_before_a_disabling_stays_dead_once_enabled_again(
    chat: Chat, smtp: FakeSmtpServer
) -> None:
    admin = await chat.world.create_admin()
    ada = await chat.world.register("ada")
    old = await _reset_link(chat, smtp, ada["email"])
    await _admin_sets_disabled(chat, admin, ada, True)
    await _admin_sets_disabled(chat, admin, ada, False)

    refused = await _reset(chat, old)

    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "password_reset_invalid"
    assert (await _login(chat, ada["email"], PASSWORD)).status_code == 200  # nothing changed
    fresh = await _reset(chat, await _reset_link(chat, smtp, ada["email"]))
    assert fresh.status_code == 200, fresh.text  # a link sent since works
    assert (await _login(chat, ada["email"], NEW_PASSWORD)).status_code == 200


async def test_a_verification_link_sent_before_a_disabling_stays_dead_once_enabled_again(
    chat: Chat, smtp: FakeSmtpServer
) -> None:
    admin = await chat.world.create_admin()
    ada = await chat.world.register("ada")
    old = await _verify_link(chat, smtp, ada)
    await _admin_sets_disabled(chat, admin, ada, True)
    await _admin_sets_disabled(chat, admin, ada, False)
    signed_in = await _login(chat, ada["email"], PASSWORD)  # her sessions ended with the disabling
    assert signed_in.status_code == 200, signed_in.text
    ada["auth"] = _auth(signed_in.json())

    refused = await chat.client.post(
        "/api/auth/email/confirm", json={"token": old}, headers=ada["auth"]
    )

    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "email_verification_invalid"
    me = await chat.client.get("/api/auth/me", headers=ada["auth"])
    assert me.json()["emailVerified"] is False
    confirmed = await chat.client.post(
        "/api/auth/email/confirm", json={"token": await _verify_link(chat, smtp, ada)},
        headers=ada["auth"],
    )  # fmt: skip
    assert confirmed.status_code == 200, confirmed.text
