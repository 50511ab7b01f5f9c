"""Usage records in Postgres."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, columns, placeholders
from whalli.ports.usage import UsageRecord, UsageRepository, UsageTotals

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
