"""A recurring search's ``lastRunAt`` is the time of a real run (one that queried the provider and
stored its results), not of the scheduler's claim; a run that failed shows ``lastError`` and
``lastErrorAt`` until one succeeds; an interval change counts from the claim, so a claimed run
still queued is never made due again. On the real app (Postgres, Redis, S3), runs executed
in-process by the container's own ``RunSearchHandler`` against a loopback SearXNG
(``FakeSearchServer``).

``claim_due`` takes every due subscription of the shared database: the test that calls it moves
its own subscription's next run to ``SLOT`` (the end of year 1: after the year-1 rows the
repository contract tests never commit, before their year-2 claims) and claims at ``SLOT``,
so it takes only its own, and deletes it at the end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.http.test_s23_hunt_searches import Hunt, hunt_app
from tests.support.fake_search import Answer, FakeSearchServer
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import RunSearchSubscription
from whalli.domain.services.searches.run_search import RunSearchHandler
from whalli.ports.unit_of_work import UnitOfWork

SLOT = datetime(1, 12, 31, tzinfo=UTC)
SECRET = "provider-body-secret-0f3a"


@pytest.fixture
def web() -> Iterator[FakeSearchServer]:
    server = FakeSearchServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> AsyncIterator[Hunt]:  # fmt: skip
    async with hunt_app(stack_urls, unique, web, smtp) as found:
        yield found


async def _uow(hunt: Hunt) -> UnitOfWork:
    uow: UnitOfWork = await resolved(hunt.chat.world.container.adapters.unit_of_work())
    return uow


async def _read(hunt: Hunt, who: dict[str, Any], search_id: str) -> dict[str, Any]:
    answer = await hunt.client.get(f"/api/searches/{search_id}", headers=who["auth"])
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _claim_at_slot(hunt: Hunt, search_id: str) -> None:
    """The scheduler's claim (``claim_due``) of this search alone (see the module's note)."""
    async with await _uow(hunt) as uow:
        found = await uow.searches.get(uuid.UUID(search_id))
        found.next_run_at = SLOT
        await uow.searches.update(found)
        await uow.commit()
    async with await _uow(hunt) as uow:
        claimed = await uow.searches.claim_due(SLOT, limit=1)
        await uow.commit()
    assert [str(s.id) for s in claimed] == [search_id]


@pytest.mark.parametrize("skipped", ["abandoned", "paused", "not configured"])
async def test_a_claimed_run_that_is_skipped_leaves_last_run_at_as_it_was(
    hunt: Hunt, skipped: str
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, f"claimed then {skipped}")
    path = f"/api/searches/{made['id']}"
    try:
        await hunt.run(made["id"])  # a real run first
        ran = await _read(hunt, ada, made["id"])
        assert ran["lastRunAt"] is not None

        await _claim_at_slot(hunt, made["id"])
        claimed = await _read(hunt, ada, made["id"])
        assert _at(claimed["nextRunAt"]) == SLOT + timedelta(minutes=60)  # it was claimed
        if skipped == "paused":
            paused = await hunt.client.patch(path, json={"active": False}, headers=ada["auth"])
            assert paused.status_code == 200, paused.text
            await hunt.run(made["id"])
        elif skipped == "not configured":
            container = hunt.chat.world.container
            unconfigured = RunSearchHandler(
                await _uow(hunt), None, container.adapters.clock(), container.adapters.ids()
            )
            await unconfigured.execute(RunSearchSubscription(subscription_id=uuid.UUID(made["id"])))

        after = await _read(hunt, ada, made["id"])
        assert after["lastRunAt"] == ran["lastRunAt"]
        assert after["lastError"] is None
        assert len(hunt.web.requests) == 1  # only the real run searched
    finally:
        gone = await hunt.client.delete(path, headers=ada["auth"])
        assert gone.status_code == 204, gone.text


async def test_a_run_that_searched_sets_last_run_at_to_when_it_stored_its_results(
    hunt: Hunt,
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "last run time")
    assert made["lastRunAt"] is None
    assert (made["lastError"], made["lastErrorAt"]) == (None, None)

    await hunt.run(made["id"])
    first = await _read(hunt, ada, made["id"])
    listed = await hunt.client.get(f"/api/searches/{made['id']}/results", headers=ada["auth"])
    found_at = {r["foundAt"] for r in listed.json()["items"]}
    assert found_at == {first["lastRunAt"]}  # the run's own time, that of its results

    await hunt.run(made["id"])  # a run that finds nothing new is a run too
    second = await _read(hunt, ada, made["id"])
    assert _at(second["lastRunAt"]) > _at(first["lastRunAt"])
    assert len((await hunt.notifications(ada))["items"]) == 1


async def test_a_failing_provider_sets_last_error_and_a_later_success_clears_it(
    hunt: Hunt,
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "failing provider")
    await hunt.run(made["id"])
    ok = await _read(hunt, ada, made["id"])

    refused = {"error": f"{SECRET}: bad api key sk-live-123"}
    hunt.web.script(Answer(401, refused))  # refused: the run ends, not retried
    await hunt.run(made["id"])
    failed = await _read(hunt, ada, made["id"])
    assert failed["lastError"] == "The search provider refused the search (HTTP 401)."
    assert _at(failed["lastErrorAt"]) > _at(ok["lastRunAt"])
    assert failed["lastRunAt"] == ok["lastRunAt"]

    hunt.web.script(Answer(503, SECRET.encode(), {"content-type": "text/plain"}))
    with pytest.raises(ServiceUnavailable, match="answered HTTP 503"):  # the queue retries it
        await hunt.run(made["id"])
    still = await _read(hunt, ada, made["id"])
    assert still["lastError"] == "The search provider failed (HTTP 503)."
    assert _at(still["lastErrorAt"]) > _at(failed["lastErrorAt"])
    assert still["lastRunAt"] == ok["lastRunAt"]
    listed = await hunt.client.get("/api/searches", headers=ada["auth"])
    assert SECRET not in listed.text
    assert "sk-live" not in listed.text

    await hunt.run(made["id"])  # the provider is back
    cleared = await _read(hunt, ada, made["id"])
    assert (cleared["lastError"], cleared["lastErrorAt"]) == (None, None)
    assert _at(cleared["lastRunAt"]) > _at(still["lastErrorAt"])


async def test_an_interval_change_counts_from_the_claim_so_a_queued_run_is_not_due_again(
    hunt: Hunt,
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "claimed, still queued")
    now = datetime.now(UTC)
    ran_at, claimed_at = now - timedelta(hours=3), now - timedelta(minutes=10)
    async with await _uow(hunt) as uow:
        found = await uow.searches.get(uuid.UUID(made["id"]))
        found.claim(ran_at)
        found.record_run(ran_at)  # ran three hours ago ...
        found.claim(claimed_at)  # ... and claimed ten minutes ago: its job not yet run
        await uow.searches.update(found)
        await uow.commit()
    path = f"/api/searches/{made['id']}"

    faster = await hunt.client.patch(path, json={"intervalMinutes": 15}, headers=ada["auth"])

    assert faster.status_code == 200, faster.text
    assert _at(faster.json()["lastRunAt"]) == ran_at
    # from the claim: not due before the queued run is a full new interval old (counted from
    # the last run it would be due at once, and a second claim would run it twice)
    assert _at(faster.json()["nextRunAt"]) == claimed_at + timedelta(minutes=15)
