"""Authorization audit of the chat start, stream, stop and regenerate routes, through the real
app, container, Postgres and Redis (the provider on loopback): what a caller may not see answers
404 like a missing id, a viewer's write 403, and nothing of the chat shows in a refusal.

Cast: alice owns a team project, eve is an editor in it, vic a viewer, sam a stranger.
The in-memory routes are audited in tests/unit/http/test_access_audit.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.http.test_chat_attach_elsewhere import team_project
from tests.integration.http.test_chat_flow import Chat
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.attachments import Attachment
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

MODEL = "openai/gpt-4o-mini"
FILENAME = "board-minutes-secret.pdf"


class Team:
    def __init__(self, chat: Chat, people: dict[str, dict[str, Any]], project_id: str) -> None:
        self.chat, self.people, self.project_id = chat, people, project_id

    def auth(self, name: str) -> dict[str, str]:
        return self.people[name]["auth"]

    async def post(self, name: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self.chat.client.post(path, json=body, headers=self.auth(name))


@pytest.fixture
async def team(chat: Chat) -> Team:
    people = {name: await chat.world.register(name) for name in ("alice", "eve", "vic", "sam")}
    project_id, _ = await team_project(chat, people["alice"], people["eve"], "editor")
    added = await chat.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": people["vic"]["email"], "role": "viewer"},
        headers=people["alice"]["auth"],
    )
    assert added.status_code == 201, added.text
    return Team(chat, people, project_id)


async def finished_chat(team: Team, title: str) -> dict[str, Any]:
    """A chat of alice's in the team project whose first reply has finished."""
    started = await team.chat.start(
        team.auth("alice"), model=MODEL, message=title, projectId=team.project_id
    )
    events = await team.chat.events(started["sessionId"])
    assert events[-1][1] == "done", events
    return started


async def pending_file(pool: PostgresPool, owner: dict[str, Any], project_id: str) -> str:
    user_id = uuid.UUID(owner["user"]["id"])
    attachment_id, now = uuid.uuid4(), datetime.now(UTC)
    attachment = Attachment(
        id=attachment_id, project_id=uuid.UUID(project_id), user_id=user_id,
        object_key=Attachment.key_for(uuid.UUID(project_id), attachment_id), filename=FILENAME,
        content_type="application/pdf", size_bytes=10, sha256="0" * 64,
        created_at=now, updated_at=now,
    )  # fmt: skip
    async with PostgresUnitOfWork(pool) as uow:
        await uow.attachments.add(attachment)
        await uow.commit()
    return str(attachment_id)


def same_refusal(refused: Any, missing: Any, asked: tuple[str, str] | None = None) -> None:
    """Both 404 problems, told apart by nothing but the request: ``asked``, the ids the two
    requests named (a refused file's problem names the id asked for), read as one."""
    assert (refused.status_code, missing.status_code) == (404, 404), (refused.text, missing.text)
    drop = ("instance", "requestId")

    def body(response: Any, asked_id: str | None) -> dict[str, Any]:
        text = json.dumps({k: v for k, v in response.json().items() if k not in drop})
        return dict(json.loads(text if asked_id is None else text.replace(asked_id, "<id>")))

    assert body(refused, asked and asked[0]) == body(missing, asked and asked[1])


async def test_start_in_a_chat_or_project_by_role(team: Team) -> None:
    title = f"Secret plan {uuid.uuid4()}"
    started = await finished_chat(team, title)
    chat_id = started["chatId"]
    message = {"model": MODEL, "message": "more please"}

    by_chat = {
        name: await team.post(name, "/api/chat/start", {**message, "chatId": chat_id})
        for name in ("sam", "vic")
    }
    missing_chat = await team.post(
        "sam", "/api/chat/start", {**message, "chatId": str(uuid.uuid4())}
    )
    by_project = {
        name: await team.post(name, "/api/chat/start", {**message, "projectId": team.project_id})
        for name in ("sam", "vic")
    }
    missing_project = await team.post(
        "sam", "/api/chat/start", {**message, "projectId": str(uuid.uuid4())}
    )

    same_refusal(by_chat["sam"], missing_chat)
    same_refusal(by_project["sam"], missing_project)
    assert by_chat["vic"].status_code == 403, by_chat["vic"].text
    assert by_project["vic"].status_code == 403, by_project["vic"].text
    for response in (*by_chat.values(), *by_project.values()):
        assert title not in response.text
        assert "Secret plan" not in response.text
    other_personal = personal_project_id(uuid.UUID(team.people["alice"]["user"]["id"]))
    into_alices_own = await team.post(
        "sam", "/api/chat/start", {**message, "projectId": str(other_personal)}
    )
    same_refusal(into_alices_own, missing_project)
    edited = await team.post("eve", "/api/chat/start", {**message, "chatId": chat_id})
    assert edited.status_code == 201, edited.text


async def test_regenerate_by_role(team: Team) -> None:
    started = await finished_chat(team, f"Secret plan {uuid.uuid4()}")
    body = {"chatId": started["chatId"]}

    stranger = await team.post("sam", "/api/chat/regenerate", body)
    missing = await team.post("sam", "/api/chat/regenerate", {"chatId": str(uuid.uuid4())})
    viewer = await team.post("vic", "/api/chat/regenerate", body)
    editor = await team.post("eve", "/api/chat/regenerate", body)

    same_refusal(stranger, missing)
    assert viewer.status_code == 403, viewer.text
    assert editor.status_code == 201, editor.text
    assert started["sessionId"] not in editor.text


async def test_a_regenerate_while_a_reply_runs_tells_a_stranger_nothing(team: Team) -> None:
    started = await team.chat.start(
        team.auth("alice"), model=MODEL, message="still going", projectId=team.project_id
    )
    stranger = await team.post("sam", "/api/chat/regenerate", {"chatId": started["chatId"]})
    missing = await team.post("sam", "/api/chat/regenerate", {"chatId": str(uuid.uuid4())})
    same_refusal(stranger, missing)  # a 404, not the 409 that would say a reply is running
    await team.chat.events(started["sessionId"])


async def test_another_projects_file_cannot_be_attached(team: Team, pg_pool: PostgresPool) -> None:
    alices_personal = str(personal_project_id(uuid.UUID(team.people["alice"]["user"]["id"])))
    in_personal = await pending_file(pg_pool, team.people["alice"], alices_personal)
    in_team = await pending_file(pg_pool, team.people["alice"], team.project_id)
    message = {"model": MODEL, "message": "Summarise"}

    missing_id = str(uuid.uuid4())
    missing = await team.post("sam", "/api/chat/start", {**message, "attachmentIds": [missing_id]})
    for name, file_id, extra in (
        ("sam", in_personal, {}),
        ("sam", in_team, {}),
        ("vic", in_personal, {}),  # a member of the team, not of alice's own project
        ("eve", in_personal, {"projectId": team.project_id}),
    ):
        response = await team.post(
            name, "/api/chat/start", {**message, "attachmentIds": [file_id], **extra}
        )
        # a 404, not the 409 naming a file still pending, nor the 422 of one's own file
        # of another project
        same_refusal(response, missing, (file_id, missing_id))
        assert FILENAME not in response.text


async def test_the_stream_and_stop_of_a_live_reply_by_role(team: Team) -> None:
    started = await team.chat.start(
        team.auth("alice"), model=MODEL, message=f"live {uuid.uuid4()}", projectId=team.project_id
    )
    session_id = started["sessionId"]
    client = team.chat.client

    stranger = await client.get(
        f"/api/chat/stream?sessionId={session_id}", headers=team.auth("sam")
    )
    missing = await client.get("/api/chat/stream?sessionId=nope", headers=team.auth("sam"))
    stop_stranger = await team.post("sam", f"/api/chat/sessions/{session_id}/stop")
    stop_missing = await team.post("sam", "/api/chat/sessions/nope/stop")
    stop_viewer = await team.post("vic", f"/api/chat/sessions/{session_id}/stop")
    read_stranger = await client.get(f"/api/chats/{started['chatId']}", headers=team.auth("sam"))

    same_refusal(stranger, missing)
    same_refusal(stop_stranger, stop_missing)
    assert stop_viewer.status_code == 403, stop_viewer.text
    assert read_stranger.status_code == 404
    assert session_id not in read_stranger.text
    events = await team.chat.events(session_id, headers=team.auth("vic"))  # a reader may read
    assert events[-1][1] == "done"


async def test_a_disabled_account_can_start_nothing(team: Team) -> None:
    admin = await team.chat.world.create_admin()
    eve_id = team.people["eve"]["user"]["id"]
    disabled = await team.chat.client.patch(
        f"/api/admin/users/{eve_id}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text

    response = await team.post(
        "eve", "/api/chat/start", {"model": MODEL, "message": "hi", "projectId": team.project_id}
    )
    assert response.status_code == 401, response.text
