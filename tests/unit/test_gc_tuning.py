"""The server's garbage-collector settings (process-wide: restored after the test)."""

from __future__ import annotations

import gc

from whalli.entrypoints.http.asgi import GC_THRESHOLDS, tune_gc


def test_start_up_objects_are_frozen_and_young_collections_come_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS != before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
