"""POST /api/chats/import: statuses, problem bodies, its own body limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer
from tests.unit.http.test_chat_routes import new_project
from tests.unit.test_chatgpt_export import conversation, lisbon
from whalli.domain.model.chat_imports import MAX_CONVERSATIONS
from whalli.domain.services.projects.ensure_personal_project import (
    EnsurePersonalProject,
    EnsurePersonalProjectHandler,
)
from whalli.entrypoints.http.controllers.chat_imports import IMPORT_BODY_MAX

SeedCaller = Callable[[str], Awaitable[Caller]]
IMPORT = "/api/chats/import"


@pytest.fixture
def seed(container: FakeContainer, client: AsyncTestClient[Litestar]) -> SeedCaller:
    async def make(name: str) -> Caller:
        caller = await seed_caller(container, client, name)
        personal = EnsurePersonalProjectHandler(container.uow(), container.clock)
        await personal.execute(EnsurePersonalProject(user_id=caller.user.id, name="Personal"))
        return caller

    return make


def body(conversations: Any, **extra: Any) -> dict[str, Any]:
    return {"format": "chatgpt", "conversations": conversations, **extra}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    found: dict[str, Any] = response.json()
    return found


async def test_an_import_answers_201_with_the_chats_and_the_skips_and_they_can_be_read(
    seed: SeedCaller,
) -> None:
    ada = await seed("ada")
    empty = conversation([("root", None, None)], current="root", title="Nothing here")
    response = await ada.call("POST", IMPORT, body([lisbon(), empty, 7]))
    assert response.status_code == 201, response.text
    result = response.json()
    [chat] = result["imported"]
    assert (chat["title"], chat["messages"]) == ("Trip to Lisbon", 4)
    no_text = "it has no user or assistant message with text"
    assert result["skipped"] == [
        {"index": 1, "title": "Nothing here", "reason": no_text},
        {"index": 2, "reason": "not a conversation object"},
    ]
    read = await ada.call("GET", f"/api/chats/{chat['chatId']}")
    assert read.status_code == 200, read.text
    messages = read.json()["messages"]
    assert [(m["role"], m["status"], m["model"], m["provider"]) for m in messages] == [
        ("user", "complete", None, None), ("assistant", "complete", "chatgpt/gpt-4o", "imported"),
    ] * 2  # fmt: skip
    listed = await ada.call("GET", "/api/chats")
    assert [c["id"] for c in listed.json()["items"]] == [chat["chatId"]]


async def test_project_access_viewer_403_stranger_404_editor_201(seed: SeedCaller) -> None:
    ada, eve, vic, sam = [await seed(n) for n in ("ada", "eve", "vic", "sam")]
    project_id = await new_project(ada, (eve, "editor"), (vic, "viewer"))
    into = body([lisbon()], projectId=project_id)
    assert problem(await vic.call("POST", IMPORT, into), 403)["code"] == "permission_denied"
    assert problem(await sam.call("POST", IMPORT, into), 404)["code"] == "project_not_found"
    assert (await eve.call("POST", IMPORT, into)).status_code == 201
    listed = await ada.call("GET", f"/api/chats?projectId={project_id}")
    assert [c["title"] for c in listed.json()["items"]] == ["Trip to Lisbon"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"format": "claude", "conversations": []}, "format"),
        ({"format": "chatgpt", "conversations": {"title": "x"}}, "conversations"),
        ({"format": "chatgpt"}, "conversations"),
        ({"format": "chatgpt", "conversations": [], "extra": 1}, "extra"),
        ({"format": "chatgpt", "conversations": [], "projectId": "nope"}, "projectId"),
    ],
)
async def test_a_malformed_request_is_a_400_problem_naming_the_field(
    seed: SeedCaller, container: FakeContainer, payload: dict[str, Any], says: str
) -> None:
    ada = await seed("ada")
    found = problem(await ada.call("POST", IMPORT, payload), 400)
    assert says in str(found)
    assert container.store.tables["chats"] == {}


async def test_over_the_limits_is_413_or_422_and_nothing_is_written(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada = await seed("ada")
    many = body([lisbon()] * (MAX_CONVERSATIONS + 1))
    found = problem(await ada.call("POST", IMPORT, many), 413)
    assert found["code"] == "import_too_large"
    assert f"at most {MAX_CONVERSATIONS} conversations" in found["detail"]
    long = conversation([("u", None, {
        "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["x" * 200_001]},
    })], current="u")  # fmt: skip
    found = problem(await ada.call("POST", IMPORT, body([lisbon(), long])), 422)
    assert "Conversation 1 has a message of 200001 characters" in found["detail"]
    assert container.store.tables["chats"] == {}


async def test_the_route_takes_bodies_above_the_app_default_up_to_its_own_limit(
    seed: SeedCaller, container: FakeContainer
) -> None:
    ada = await seed("ada")
    padded = lisbon()
    padded["moderation_results"] = ["x" * 12_000_000]  # above Litestar's default 10 MB
    assert (await ada.call("POST", IMPORT, body([padded]))).status_code == 201
    padded["moderation_results"] = ["x" * IMPORT_BODY_MAX]
    assert problem(await ada.call("POST", IMPORT, body([padded])), 413)["status"] == 413
    assert len(container.store.tables["chats"]) == 1


async def test_importing_needs_a_caller(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(IMPORT, json=body([lisbon()]))
    assert problem(response, 401)["status"] == 401
