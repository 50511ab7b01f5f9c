"""Hunt (s31): recurring web searches, what they store and what they send, on the real app
(Postgres, Redis, S3), runs executed in-process by the container's own ``RunSearchHandler``
against a loopback SearXNG (``FakeSearchServer``) and a loopback SMTP server
(``FakeSmtpServer``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.integration.http.test_s23_hunt_searches import Hunt, _held_handler, hunt_app
from tests.integration.http.test_search_last_run import smtp, web  # noqa: F401  (fixtures)
from tests.support.fake_search import Answer, FakeSearchServer
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.loopback_http import LoopbackHttpServer
from whalli.adapters.embedded.stack import StackUrls


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,  # noqa: F811
    smtp: FakeSmtpServer,  # noqa: F811
) -> AsyncIterator[Hunt]:  # fmt: skip
    async with hunt_app(stack_urls, unique, web, smtp) as found:
        yield found


async def test_result_titles_are_stripped_of_markup_as_snippets_are_in_the_app_and_the_email(
    hunt: Hunt,
) -> None:
    ada = await hunt.verified_user("ada")
    query = "titles with markup"
    hunt.web.hits[query] = [
        ("https://markup.example/1", "<b>Bold</b> &amp; <img src=x onerror=alert(1)>plain", "s")
    ]
    made = await hunt.subscribe(ada, query)
    await hunt.run(made["id"])

    listed = await hunt.client.get(f"/api/searches/{made['id']}/results", headers=ada["auth"])
    assert [r["title"] for r in listed.json()["items"]] == ["Bold & plain"]
    [notification] = (await hunt.notifications(ada))["items"]
    assert notification["body"] == "Bold & plain"
    [email] = hunt.smtp.messages
    lines = email.parsed().get_content().splitlines()
    assert lines[2:4] == ["Bold & plain", "https://markup.example/1"]


async def test_a_provider_answering_json_nested_too_deep_ends_the_run_as_a_bad_answer(
    hunt: Hunt,
) -> None:
    """Deep nesting is a few hundred kilobytes, far under the answer's size cap: the decoder's
    ``RecursionError`` is an answer that is not results (the run ends, recorded), not an
    error the queue retries five times and then records as "could not be run"."""
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "nested answer")
    depth = 100_000
    nested = b'{"results": ' + b"[" * depth + b"]" * depth + b"}"
    hunt.web.script(Answer(200, nested, {"content-type": "application/json"}))

    await hunt.run(made["id"])  # no error: the run ended

    found = (await hunt.client.get(f"/api/searches/{made['id']}", headers=ada["auth"])).json()
    assert found["lastError"] == "The search provider answered without results."
    assert found["lastRunAt"] is None
    assert (await hunt.notifications(ada))["items"] == []


async def test_a_query_changed_while_its_run_waits_is_not_notified_with_the_old_querys_results(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    web: FakeSearchServer, smtp: FakeSmtpServer,  # noqa: F811
) -> None:  # fmt: skip
    """The held answer is the old query's: stored and announced, it would read "1 new result
    for <new query>" and list pages about the old one, and mark the new query as run."""
    release, asked = threading.Event(), threading.Event()
    held = LoopbackHttpServer(_held_handler(release, asked)).start()
    try:
        async with hunt_app(stack_urls, unique, web, smtp, WHALLI_SEARCH_BASE_URL=held.url) as hunt:
            ada = await hunt.verified_user("ada")
            made = await hunt.subscribe(ada, "old query")
            run = asyncio.create_task(hunt.run(made["id"]))
            assert await asyncio.to_thread(asked.wait, 30)
            path = f"/api/searches/{made['id']}"
            changed = await hunt.client.patch(
                path, json={"query": "new query"}, headers=ada["auth"]
            )
            assert changed.status_code == 200, changed.text
            release.set()
            await run

            assert (await hunt.notifications(ada))["items"] == []
            results = await hunt.client.get(f"{path}/results", headers=ada["auth"])
            assert results.json()["items"] == []
            found = (await hunt.client.get(path, headers=ada["auth"])).json()
            assert found["lastRunAt"] is None
            assert datetime.fromisoformat(found["nextRunAt"]) <= datetime.now(UTC)  # still due
    finally:
        release.set()
        held.stop()
    assert smtp.messages == []
