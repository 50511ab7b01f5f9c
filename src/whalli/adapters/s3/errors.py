"""Translation of MinIO SDK and urllib3 errors into domain errors, without credentials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from whalli.domain.model.errors import BlobNotFound, ServiceUnavailable

MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject"})


def _reason(error: BaseException) -> str:
    # Fixed wording only: the SDK's and urllib3's messages carry URLs and request ids.
    if isinstance(error, MaxRetryError) and error.reason is not None:
        return _reason(error.reason)
    if isinstance(error, S3Error):
        return f"request refused ({error.code})"
    if isinstance(error, ServerError):
        return f"server error (HTTP {error.status_code})"
    if isinstance(error, InvalidResponseError):
        return "unexpected response"
    # before the timeout check: urllib3's NewConnectionError subclasses ConnectTimeoutError
    if isinstance(error, NewConnectionError | ConnectionError):
        return "connection failed"
    if isinstance(error, Urllib3Timeout | TimeoutError):
        return "timed out"
    return f"request failed ({type(error).__name__})"


def unavailable(error: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"s3: {_reason(error)}")


@contextmanager
def translated(key: str | None = None) -> Iterator[None]:
    """Raise ``BlobNotFound`` for a missing object and ``ServiceUnavailable`` otherwise."""
    try:
        yield
    except S3Error as e:
        if key is not None and e.code in MISSING_OBJECT_CODES:
            raise BlobNotFound() from e  # (no key: error details reach response bodies)
        raise unavailable(e) from e
    except (MinioException, HTTPError, OSError) as e:
        raise unavailable(e) from e
