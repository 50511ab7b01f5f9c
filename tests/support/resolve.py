"""Providers of a started app hand out plain values; before startup, awaitables."""

from __future__ import annotations

import inspect
from typing import Any


async def resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
