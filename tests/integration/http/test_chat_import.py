"""Importing a ChatGPT export through the real app, container and Postgres: the chats are
listed, read (in the export's order and times) and found by full-text search."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.integration.http.test_identity_end_to_end import World, world  # noqa: F401
from tests.support.resolve import resolved
from tests.unit.test_chatgpt_export import T, conversation, lisbon, message
from whalli.adapters.system.clock import SystemClock
from whalli.domain.model.errors import Conflict
from whalli.domain.services.chats.import_chats import ImportChats, ImportChatsHandler


def unique_words() -> tuple[str, str]:
    token = uuid.uuid4().hex[:12]
    return f"zebrafish{token}", f"okapi{token}"


async def test_an_imported_export_is_listed_read_and_searched(world: World) -> None:  # noqa: F811
    ada = await world.register("ada")
    in_message, in_title = unique_words()
    export = [lisbon()]
    export[0]["mapping"]["a2b"]["message"]["content"]["parts"] = [f"Try {in_message} stew"]
    long = [("n0", None, message("user", f"{in_title} question", at=T))] + [
        (f"n{i}", f"n{i - 1}", message("assistant" if i % 2 else "user", f"turn {i}", at=T + i))
        for i in range(1, 2001)
    ]  # more messages than one insert statement takes
    export.append(conversation(long, current="n2000", title=f"All about {in_title}"))
    export.append({"title": "broken", "mapping": None})

    response = await world.client.post(
        "/api/chats/import", json={"format": "chatgpt", "conversations": export},
        headers=ada["auth"],
    )  # fmt: skip
    assert response.status_code == 201, response.text
    result = response.json()
    lisbon_id, long_id = (c["chatId"] for c in result["imported"])
    assert [c["messages"] for c in result["imported"]] == [4, 2001]
    assert result["skipped"] == [
        {"index": 2, "title": "broken", "reason": "it has no messages (no mapping)"}
    ]

    listed = await world.client.get("/api/chats", headers=ada["auth"])
    assert {c["id"] for c in listed.json()["items"]} == {lisbon_id, long_id}

    read = await world.client.get(f"/api/chats/{lisbon_id}", headers=ada["auth"])
    assert read.status_code == 200, read.text
    chat = read.json()
    assert chat["title"] == "Trip to Lisbon"
    assert datetime.fromisoformat(chat["createdAt"]) == datetime.fromtimestamp(T, UTC)
    assert [(m["role"], m["content"]) for m in chat["messages"]] == [
        ("user", "Plan 3 days in Lisbon"),
        ("assistant", "Day 1: Alfama.\n\nDay 2: Belém."),
        ("user", "And food?"),
        ("assistant", f"Try {in_message} stew"),
    ]
    assert chat["messages"][1]["model"] == "chatgpt/gpt-4o"
    long_read = await world.client.get(f"/api/chats/{long_id}", headers=ada["auth"])
    contents = [m["content"] for m in long_read.json()["messages"]]
    assert contents == [f"{in_title} question"] + [f"turn {i}" for i in range(1, 2001)]

    for word, expected in ((in_message, lisbon_id), (in_title, long_id)):
        hits = await world.client.get(f"/api/chats/search?q={word}", headers=ada["auth"])
        assert [h["chatId"] for h in hits.json()] == [expected], hits.text


class RepeatingIds:
    """New ids, except that the ``repeat``-th is the first again: a write that fails late."""

    def __init__(self, repeat: int) -> None:
        self._given: list[uuid.UUID] = []
        self._repeat = repeat

    def new_id(self) -> uuid.UUID:
        new = self._given[0] if len(self._given) + 1 == self._repeat else uuid.uuid4()
        self._given.append(new)
        return new

    def new_token(self, nbytes: int = 32) -> str:
        return uuid.uuid4().hex


async def test_a_write_failing_on_the_second_chat_leaves_not_even_the_first(
    world: World,  # noqa: F811
) -> None:
    ada = await world.register("ada")
    user_id = uuid.UUID(ada["user"]["id"])
    uow = await resolved(world.container.adapters.unit_of_work())
    # lisbon() takes 5 ids (a chat and 4 messages): the 6th, the second chat's, repeats the first
    handler = ImportChatsHandler(uow, SystemClock(), RepeatingIds(repeat=6))  # type: ignore[arg-type]
    command = ImportChats(user_id=user_id, format="chatgpt", conversations=[lisbon(), lisbon()])
    with pytest.raises(Conflict, match="already taken"):
        await handler.execute(command)
    listed = await world.client.get("/api/chats", headers=ada["auth"])
    assert listed.json()["items"] == []
    response = await world.client.post(
        "/api/chats/import", json={"format": "chatgpt", "conversations": [lisbon()]},
        headers=ada["auth"],
    )  # fmt: skip
    assert response.status_code == 201, response.text
