"""Which servers to use: those named by ``WHALLI_*`` variables, else the embedded stack."""

from __future__ import annotations

import os
from pathlib import Path

from whalli.adapters.embedded.process import read_or_create_secret
from whalli.adapters.embedded.stack import EmbeddedStack, StackUrls
from whalli.config import Settings, load_settings

# Stable preferred ports for the development stack (another free port is used when taken).
DEV_BASE_PORT = 15432


class ServicesNotRunning(Exception):
    pass


def dev_stack(settings: Settings) -> EmbeddedStack:
    return EmbeddedStack(Path(settings.data_dir), base_port=DEV_BASE_PORT)


def embedded_env(settings: Settings, urls: StackUrls) -> dict[str, str]:
    """Variables for what the environment does not set itself."""
    env: dict[str, str] = {}
    if settings.database_url is None:
        env["WHALLI_DATABASE_URL"] = urls.database_url
    if settings.redis_url is None:
        env["WHALLI_REDIS_URL"] = urls.redis_url
    if settings.s3_endpoint is None:
        env.update(
            WHALLI_S3_ENDPOINT=urls.s3_endpoint,
            WHALLI_S3_ACCESS_KEY=urls.s3_access_key,
            WHALLI_S3_SECRET_KEY=urls.s3_secret_key,
        )
    return env


def development_secrets(settings: Settings) -> dict[str, str]:
    """Outside production, a JWT signing key kept under the data folder when none is set, so
    tokens survive restarts and every API process signs with the same key."""
    if settings.jwt_secret is not None or settings.env == "production":
        return {}
    path = Path(settings.data_dir) / "jwt_secret"
    return {"WHALLI_JWT_SECRET": read_or_create_secret(path, 48)}


def resolved_settings() -> Settings:
    """Settings with the embedded stack's URLs filled in where the environment names none.

    Also exports them to ``os.environ`` so child processes (API workers) see the same servers.
    """
    settings = load_settings()
    secrets = development_secrets(settings)
    if secrets:
        os.environ.update(secrets)
        settings = load_settings()
    if not settings.uses_embedded_services:
        return settings
    urls = dev_stack(settings).urls()
    if urls is None:
        raise ServicesNotRunning(
            "The embedded services are not running. Start them with `whalli services up` "
            "(or use `make run`), or set WHALLI_DATABASE_URL, WHALLI_REDIS_URL and "
            "WHALLI_S3_ENDPOINT."
        )
    os.environ.update(embedded_env(settings, urls))
    return load_settings()


def development_outbox(settings: Settings) -> dict[str, str]:
    """Without a mail server, the folder ``whalli dev`` has every email written to: the one
    the settings name (the environment or ``.env``: its children read both, the environment
    first, so a default given them would hide the ``.env``'s), else ``<data dir>/outbox``."""
    if settings.smtp_host or settings.email_outbox_dir:
        return {}
    return {"WHALLI_EMAIL_OUTBOX_DIR": str(Path(settings.data_dir) / "outbox")}
