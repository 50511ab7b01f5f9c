"""Readiness probe for the S3 bucket."""

from __future__ import annotations

import asyncio

from minio import Minio

from whalli.adapters.s3.errors import translated
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.health import HealthProbe


class S3HealthProbe(HealthProbe):
    name = "s3"

    def __init__(self, client: Minio, bucket: str, timeout: float = 2.0) -> None:
        self._client = client
        self._bucket = bucket
        self._timeout = timeout

    async def check(self) -> None:
        # The SDK is synchronous: the request runs in a thread, and waiting for it is bounded
        # here (a request left running ends at the client's own connect/read timeouts).
        with translated():  # a TimeoutError from wait_for becomes "s3: timed out"
            exists = await asyncio.wait_for(
                asyncio.to_thread(self._client.bucket_exists, self._bucket), self._timeout
            )
        if not exists:
            raise ServiceUnavailable("s3: the bucket does not exist")
