from __future__ import annotations

from collections.abc import Iterator

import pytest

from whalli.adapters.structlog.logging import reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()
