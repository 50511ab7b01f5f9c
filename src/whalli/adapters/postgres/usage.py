"""Usage records in Postgres."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, columns, placeholders
from whalli.ports.usage import UsageDay, UsageRecord, UsageRepository, UsageTotals

_COLUMNS = tuple(UsageRecord.__struct_fields__)
_INSERT = f"INSERT INTO usage_records ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
# sum(bigint) is numeric in Postgres: cast back so the domain gets ints, not Decimals.
_TOTALS = (
    "SELECT count(*) AS requests, "
    "coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens, "
    "coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens, "
    "coalesce(sum(cost_usd), 0)::double precision AS cost_usd "
    "FROM usage_records WHERE user_id = %(user_id)s AND created_at >= %(since)s"
)

_DAILY = (
    "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, provider, "
    "count(*) AS requests, count(*) FILTER (WHERE cached) AS cached_requests, "
    "sum(prompt_tokens)::bigint AS prompt_tokens, "
    "sum(completion_tokens)::bigint AS completion_tokens, "
    "sum(cost_usd)::double precision AS cost_usd, "
    "sum(cached_prompt_tokens)::bigint AS cached_prompt_tokens, "
    "sum(cache_write_tokens)::bigint AS cache_write_tokens, "
    "sum(reasoning_tokens)::bigint AS reasoning_tokens, "
    "sum(audio_seconds)::double precision AS audio_seconds "
    "FROM usage_records "
    "WHERE user_id = %(user_id)s AND created_at >= %(since)s AND created_at < %(until)s "
    'GROUP BY 1, model, provider ORDER BY 1, model COLLATE "C", provider COLLATE "C"'
)


class PostgresUsageRepository(PostgresRepository, UsageRepository):
    async def add(self, record: UsageRecord) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(record))

    async def totals(
        self, user_id: UUID, *, since: datetime, model: str | None = None
    ) -> UsageTotals:
        params: dict[str, Any] = {"user_id": user_id, "since": since}
        query = _TOTALS
        if model is not None:
            params["model"] = model
            query = f"{_TOTALS} AND model = %(model)s"
        row = await self._one(query, params)
        return msgspec.convert(row, UsageTotals)

    async def daily(self, user_id: UUID, *, since: datetime, until: datetime) -> list[UsageDay]:
        params = {"user_id": user_id, "since": since, "until": until}
        return [msgspec.convert(r, UsageDay) for r in await self._all(_DAILY, params)]
