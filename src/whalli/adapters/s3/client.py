"""The MinIO SDK client for any S3-compatible store (MinIO, SeaweedFS, AWS S3)."""

from __future__ import annotations

from urllib.parse import urlsplit

import urllib3
from minio import Minio


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept ``host:port`` or a URL such as ``http://127.0.0.1:9000``; return (netloc, secure)."""
    if "://" not in endpoint:
        return endpoint.rstrip("/"), secure
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the S3 endpoint must be host:port or an http(s):// URL")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError("the S3 endpoint URL must not carry a path, query or credentials")
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:  # an IPv6 literal needs its brackets back
        netloc = f"[{parts.hostname}]" + ("" if parts.port is None else f":{parts.port}")
    return netloc, parts.scheme == "https"


def create_minio(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    region: str = "us-east-1",
    connect_timeout: float = 2.0,
    read_timeout: float = 60.0,
) -> Minio:
    """Build a client; nothing is contacted until the first call.

    The region is fixed so that the SDK never asks the server for a bucket's location. The
    connection pool has a short connect timeout and few retries (the SDK's default is minutes
    and five retries), so a dead store fails readiness and requests quickly.
    """
    netloc, secure = _split_endpoint(endpoint, secure)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        retries=urllib3.Retry(
            total=2,
            connect=1,
            read=1,
            backoff_factor=0.2,
            status_forcelist=(500, 502, 503, 504),
            # hand the last 5xx to the SDK, which raises its own error for it
            raise_on_status=False,
        ),
    )
    return Minio(
        netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region,
        http_client=http,
    )
