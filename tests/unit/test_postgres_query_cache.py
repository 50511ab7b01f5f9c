"""psycopg parses each of our statements' placeholders once, however many parameters it has."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from psycopg import _queries
from psycopg.adapt import Transformer

import whalli.adapters.postgres.pool  # noqa: F401 - raises psycopg's limit on import
from whalli.adapters.postgres.chats import _insert_chat_with_messages


def test_a_new_chats_statement_of_more_than_50_parameters_is_parsed_once() -> None:
    query = _insert_chat_with_messages(2)
    names = {part.split(")s", 1)[0] for part in query.split("%(")[1:]}
    assert len(names) > 50  # above psycopg's own limit for its cache
    params = dict.fromkeys(names, 1) | {"id": uuid.uuid4(), "created_at": datetime.now(UTC)}

    def convert() -> None:
        _queries.PostgresQuery(Transformer()).convert(query, params)

    convert()
    before = _queries._query2pg.cache_info()
    convert()
    after = _queries._query2pg.cache_info()
    assert after.hits == before.hits + 1  # from the cache: not parsed again
    assert after.misses == before.misses
