"""GET /api/usage and GET /api/admin/users/{id}/usage: the summary's shape, its dates, who."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.chats import Chat, Message, MessageStatus, TokenUsage
from whalli.domain.model.users import Role
from whalli.ports.usage import UsageRecord


async def spend(
    container: FakeContainer, caller: Caller, *, days_ago: int = 0, **kw: object
) -> None:
    fields: dict[str, object] = {
        "model": "openai/gpt-4o-mini", "provider": "openai", "prompt_tokens": 10,
        "completion_tokens": 5, "cost_usd": 0.25, "cached": False, **kw,
    }  # fmt: skip
    record = UsageRecord(
        id=uuid.uuid4(), user_id=caller.user.id, message_id=None,
        created_at=container.clock.now() - timedelta(days=days_ago), **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    async with container.uow() as uow:
        await uow.usage.add(record)
        await uow.commit()


async def test_the_callers_usage_totals_per_model_and_per_day(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await seed_caller(container, client, "ada")
    bob = await seed_caller(container, client, "bob")
    await spend(container, ada, reasoning_tokens=3)
    await spend(container, ada, days_ago=2, cached=True, model="dev/echo", provider="dev")
    await spend(container, bob, cost_usd=7.0, reasoning_tokens=4)
    today = container.clock.now().date()

    response = await ada.call("GET", "/api/usage")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == (str(today - timedelta(days=29)), str(today))
    assert body["total"] == {
        "requests": 2, "cachedRequests": 1, "promptTokens": 20, "completionTokens": 10,
        "costUsd": 0.5, "cachedPromptTokens": 0, "cacheWriteTokens": 0, "reasoningTokens": 3,
        "audioSeconds": 0.0,
    }  # fmt: skip
    assert [(m["model"], m["provider"], m["requests"]) for m in body["byModel"]] == [
        ("dev/echo", "dev", 1), ("openai/gpt-4o-mini", "openai", 1),
    ]  # fmt: skip
    assert len(body["byDay"]) == 30
    assert body["byDay"][-1] == {
        "day": str(today), "requests": 1, "cachedRequests": 0, "promptTokens": 10,
        "completionTokens": 5, "costUsd": 0.25, "cachedPromptTokens": 0, "cacheWriteTokens": 0,
        "reasoningTokens": 3, "audioSeconds": 0.0,
    }  # fmt: skip
    assert body["byDay"][-3]["cachedRequests"] == 1


async def test_a_range_is_chosen_with_from_and_to(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await seed_caller(container, client, "ada")
    await spend(container, ada, days_ago=1)
    await spend(container, ada)
    yesterday = container.clock.now().date() - timedelta(days=1)

    response = await ada.call("GET", f"/api/usage?from={yesterday}&to={yesterday}")

    assert response.status_code == 200, response.text
    assert [d["day"] for d in response.json()["byDay"]] == [str(yesterday)]
    assert response.json()["total"]["requests"] == 1


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("from=2031-02-30", 400, "from"),
        ("to=yesterday", 400, "to"),
        ("from=2031-05-02&to=2031-05-01", 422, "from must not be after to"),
        ("from=2020-01-01&to=2031-01-01", 422, "at most 366 days"),
    ],
)
async def test_a_bad_range_is_a_problem_saying_what_is_wrong(
    container: FakeContainer, client: AsyncTestClient[Litestar], query: str, status: int,
    says: str,
) -> None:  # fmt: skip
    ada = await seed_caller(container, client, "ada")

    response = await ada.call("GET", f"/api/usage?{query}")

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.text


async def test_another_accounts_usage_is_for_admins_and_needs_credentials(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await seed_caller(container, client, "ada")
    root = await seed_caller(container, client, "root", role=Role.ADMIN)
    await spend(container, ada, cost_usd=1.5)
    url = f"/api/admin/users/{ada.user.id}/usage"

    by_admin = await root.call_signed_in("GET", url)
    by_user = await ada.call("GET", f"/api/admin/users/{root.user.id}/usage")
    unknown = await root.call_signed_in("GET", f"/api/admin/users/{uuid.uuid4()}/usage")
    anonymous = await client.get("/api/usage")

    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["total"]["costUsd"] == 1.5
    assert (by_user.status_code, by_user.json()["code"]) == (403, "permission_denied")
    assert unknown.status_code == 404
    assert anonymous.status_code == 401


async def test_admins_see_how_each_models_replies_were_rated(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await seed_caller(container, client, "ada")
    root = await seed_caller(container, client, "root", role=Role.ADMIN)
    now = container.clock.now()
    project = (await ada.call("POST", "/api/projects", {"name": "Research"})).json()
    chat = Chat(
        id=container.ids.new_id(), project_id=uuid.UUID(project["id"]), user_id=ada.user.id,
        title="t", created_at=now, updated_at=now,
    )  # fmt: skip
    reply = Message.pending_reply(
        id=container.ids.new_id(), chat_id=chat.id, model="dev/echo", provider="dev", now=now
    )
    reply.finish(status=MessageStatus.COMPLETE, content="x", now=now, usage=TokenUsage())
    async with container.uow() as uow:
        await uow.chats.add(chat)
        await uow.chats.add_message(reply)
        await uow.commit()
    rated = await ada.call(
        "PUT", f"/api/chats/{chat.id}/messages/{reply.id}/feedback",
        {"rating": "down", "comment": "wrong"},
    )  # fmt: skip
    assert rated.status_code == 200, rated.text
    too_long = await ada.call(
        "PUT", f"/api/chats/{chat.id}/messages/{reply.id}/feedback",
        {"rating": "up", "comment": "x" * 2001},
    )  # fmt: skip
    missing = await ada.call(
        "PUT", f"/api/chats/{chat.id}/messages/{uuid.uuid4()}/feedback", {"rating": "up"}
    )
    assert (too_long.status_code, missing.status_code) == (422, 404)
    assert container.chat_metrics.ratings == {("dev/echo", "down"): 1}  # the refused: not counted

    summary = await root.call_signed_in("GET", "/api/admin/feedback")
    refused = await ada.call("GET", "/api/admin/feedback")

    assert summary.status_code == 200, summary.text
    assert summary.json()["byModel"] == [{"model": "dev/echo", "up": 0, "down": 1, "comments": 1}]
    assert "wrong" not in summary.text
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
