from __future__ import annotations

import pytest

from whalli.adapters.memory.email_sender import InMemoryEmailSender
from whalli.adapters.memory.web_search import InMemoryWebSearch
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.searches import SearchHit
from whalli.ports.email_sender import EmailMessage

HITS = [SearchHit(url=f"https://example.com/{i}", title=f"Result {i}") for i in range(5)]


async def test_search_returns_the_hits_configured_for_the_query_up_to_the_limit() -> None:
    search = InMemoryWebSearch({"python 3.14": HITS})

    assert await search.search("python 3.14", limit=2) == HITS[:2]
    assert await search.search("something else") == []
    assert search.queries == ["python 3.14", "something else"]


async def test_search_hits_can_change_between_runs() -> None:
    search = InMemoryWebSearch({"news": HITS[:1]})
    search.set_hits("news", HITS[1:3])

    assert await search.search("news") == HITS[1:3]


async def test_an_unavailable_search_provider_raises_service_unavailable() -> None:
    search = InMemoryWebSearch()
    search.unavailable = True

    with pytest.raises(ServiceUnavailable, match="search provider is unavailable"):
        await search.search("anything")


async def test_sent_email_lands_in_the_outbox() -> None:
    sender = InMemoryEmailSender()
    message = EmailMessage(to="ada@example.com", subject="New results", text="3 new results")

    await sender.send(message)

    assert sender.outbox == [message]


async def test_an_unavailable_mail_server_raises_and_sends_nothing() -> None:
    sender = InMemoryEmailSender()
    sender.unavailable = True

    with pytest.raises(ServiceUnavailable, match="mail server is unavailable"):
        await sender.send(EmailMessage(to="ada@example.com", subject="s", text="t"))
    assert sender.outbox == []
