"""``ChatSearch`` on Postgres full-text search (a reader: it borrows its own pooled connection)."""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

import msgspec
import psycopg
from psycopg.rows import dict_row

from whalli.adapters.postgres._base import check_limit, translated
from whalli.adapters.postgres.pool import PostgresPool
from whalli.domain.model.errors import InvalidInput
from whalli.ports.chat_search import SPACELESS_CHARACTERS, ChatSearch, ChatSearchHit

# websearch_to_tsquery accepts any text (quotes, operators, punctuation) without a syntax error.
# The 'simple' configuration matches chats.title_tsv and messages.content_tsv (any language).
# `matches` keeps one row per readable chat: its best message, if any message matches; the
# headline (costly: it re-parses the text) is only computed for the rows that are returned; it
# reads the text as the index does (whalli_search_words, migration 0023; the first 200,000
# characters, every one a message may hold, migration 0025), and the spaces that put between
# characters written without them are taken out again.
_NEGATIONS: Final = re.compile(r"-(?:[^\w-]*-)+")  # dashes with only punctuation between
_SEARCH: Final = f"""
WITH q AS (SELECT websearch_to_tsquery('simple', %(query)s) AS query),
matches AS (
    SELECT DISTINCT ON (c.id)
        c.id AS chat_id, c.project_id, c.title, c.updated_at,
        c.pinned_at IS NOT NULL AS pinned, c.archived_at IS NOT NULL AS archived,
        m.content,
        coalesce(ts_rank(c.title_tsv, q.query), 0)
            + coalesce(ts_rank(m.content_tsv, q.query), 0) AS rank
    FROM q
    CROSS JOIN chats c
    JOIN memberships mb ON mb.project_id = c.project_id AND mb.user_id = %(user_id)s
    LEFT JOIN messages m ON m.chat_id = c.id AND m.content_tsv @@ q.query
        AND m.answers IS NULL  -- (earlier versions of replies are not found)
    WHERE c.title_tsv @@ q.query OR m.id IS NOT NULL
    ORDER BY c.id, ts_rank(m.content_tsv, q.query) DESC NULLS LAST, m.created_at DESC
),
best AS (
    SELECT * FROM matches ORDER BY rank DESC, updated_at DESC, chat_id DESC LIMIT %(limit)s
)
SELECT best.chat_id, best.project_id, best.title, best.updated_at, best.rank::double precision,
    best.pinned, best.archived,
    CASE WHEN best.content IS NULL THEN '' ELSE regexp_replace(ts_headline(
        'simple', whalli_search_words(left(best.content, 200000)), q.query,
        'StartSel="", StopSel="", MaxFragments=2, MaxWords=24, MinWords=8, '
        'FragmentDelimiter=" … "'
    ), ' ?([{SPACELESS_CHARACTERS}]) ?', '\\1', 'g') END AS snippet
FROM best CROSS JOIN q
ORDER BY best.rank DESC, best.updated_at DESC, best.chat_id DESC
"""


_SPACELESS = re.compile(f"[{SPACELESS_CHARACTERS}]+")


def phrased_spaceless_runs(query: str) -> str:
    """The query as the index holds text written without spaces (see migration 0023): each run
    of those characters becomes a phrase of one-character words, found wherever it appears
    ('北京' asks for "北 京": 北 followed by 京); inside a quoted phrase it is only spaced out."""
    parts = query.split('"')
    for i, part in enumerate(parts):
        quoted = i % 2 == 1  # websearch syntax: what follows an odd quote is a phrase
        parts[i] = _SPACELESS.sub(
            (lambda m: " " + " ".join(m.group()) + " ")
            if quoted
            else (lambda m: '"' + " ".join(m.group()) + '"'),
            part,
        )
    return '"'.join(parts)


class PostgresChatSearch(ChatSearch):
    """Snippets are plain text without highlight markers (a chat may contain any character);
    a chat found by its title alone has an empty snippet."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def search(self, user_id: UUID, query: str, *, limit: int = 20) -> list[ChatSearchHit]:
        check_limit(limit)
        # Postgres text cannot hold NUL; it separates words as well as a space would.
        query = query.replace("\x00", " ")
        if not query.strip() or limit == 0:
            return []
        # A run of negations ("---", "- - -") nests one NOT in another, and from 33 on the
        # parser's stack overflows: one is as good as many
        query = _NEGATIONS.sub("-", query)
        query = phrased_spaceless_runs(query)
        params = {"query": query, "user_id": user_id, "limit": limit}
        try:
            with translated():
                async with (
                    self._pool.connection() as conn,
                    conn.cursor(row_factory=dict_row) as cur,
                ):
                    await cur.execute(_SEARCH, params)
                    rows = await cur.fetchall()
        except psycopg.errors.InternalError_ as e:  # any other query too deep to parse
            if "tsquery" not in str(e):
                raise
            raise InvalidInput("q is too complex a search.", field="q") from None
        return [msgspec.convert(row, ChatSearchHit) for row in rows]
