"""Feedback on replies in Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, columns, placeholders
from whalli.domain.model.chat_imports import IMPORTED_PROVIDER
from whalli.domain.model.feedback import Feedback
from whalli.ports.feedback import FeedbackRepository, ModelRatings

_COLUMNS = tuple(Feedback.__struct_fields__)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM message_feedback"
_PUT = (
    f"INSERT INTO message_feedback ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)}) "
    "ON CONFLICT (message_id, user_id) DO UPDATE SET rating = EXCLUDED.rating, "
    "comment = EXCLUDED.comment, updated_at = EXCLUDED.updated_at"
)

# an imported reply's model is free text from the upload: all of them are one row, ``imported``
_MODEL = "CASE WHEN m.provider = %(imported)s THEN %(imported)s ELSE coalesce(m.model, '') END"
_BY_MODEL = (
    f"SELECT {_MODEL} AS model, count(*) FILTER (WHERE f.rating = 'up') AS up, "
    "count(*) FILTER (WHERE f.rating = 'down') AS down, count(f.comment) AS comments "
    "FROM message_feedback f JOIN messages m ON m.id = f.message_id "
    "WHERE f.updated_at >= %(since)s AND f.updated_at < %(until)s "
    f'GROUP BY 1 ORDER BY {_MODEL} COLLATE "C"'
)


class PostgresFeedbackRepository(PostgresRepository, FeedbackRepository):
    async def put(self, feedback: Feedback) -> None:
        await self._run(_PUT, msgspec.structs.asdict(feedback))

    async def find(self, message_id: UUID, user_id: UUID) -> Feedback | None:
        query = f"{_SELECT} WHERE message_id = %(m)s AND user_id = %(u)s"
        row = await self._one(query, {"m": message_id, "u": user_id})
        return None if row is None else msgspec.convert(row, Feedback)

    async def remove(self, message_id: UUID, user_id: UUID) -> bool:
        query = "DELETE FROM message_feedback WHERE message_id = %(m)s AND user_id = %(u)s"
        return await self._run(query, {"m": message_id, "u": user_id}) > 0

    async def of_user(self, user_id: UUID, message_ids: Sequence[UUID]) -> dict[UUID, Feedback]:
        if not message_ids:
            return {}
        query = f"{_SELECT} WHERE user_id = %(u)s AND message_id = ANY(%(ids)s)"
        rows = await self._all(query, {"u": user_id, "ids": list(message_ids)})
        return {r["message_id"]: msgspec.convert(r, Feedback) for r in rows}

    async def by_model(self, *, since: datetime, until: datetime) -> list[ModelRatings]:
        params = {"since": since, "until": until, "imported": IMPORTED_PROVIDER}
        rows = await self._all(_BY_MODEL, params)
        return [msgspec.convert(r, ModelRatings) for r in rows]
