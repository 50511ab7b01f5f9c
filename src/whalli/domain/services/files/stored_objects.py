"""Deleting the stored bytes of files whose rows are gone (shared by use cases, not one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from whalli.ports.blob_storage import BlobStorage

log = logging.getLogger(__name__)
DELETING_AT_ONCE = 16


async def delete_objects(blobs: BlobStorage, keys: Sequence[str], *, of: str) -> None:
    """Delete the objects ``keys``, ``DELETING_AT_ONCE`` at a time, once the deletion of their
    rows is committed (``of`` names what was deleted, for the log: "a deleted project").

    Best effort: the storage is not transactional; an object that fails is logged and left
    (an object no row names is invisible and harmless), never raised: the rows are gone."""

    async def one(key: str) -> None:
        try:
            await blobs.delete(key)
        except Exception:
            log.warning("The file object %s of %s was not deleted.", key, of, exc_info=True)

    for i in range(0, len(keys), DELETING_AT_ONCE):
        await asyncio.gather(*(one(key) for key in keys[i : i + DELETING_AT_ONCE]))
