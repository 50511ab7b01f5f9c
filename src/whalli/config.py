"""Typed settings from ``WHALLI_*`` environment variables and an optional ``.env`` file.

An invalid value stops start-up with a message naming the variable; secret values are wrapped in
:class:`Secret` so they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict

PREFIX = "WHALLI_"


# A production scrape token is long enough not to be guessed (``openssl rand -hex 32``: 64).
MIN_METRICS_TOKEN_CHARS = 16

# Beyond the provider's own time, a transcription job downloads the audio (at most 25 MB by
# default) and records the result: the worker's job time limit leaves it this much more, so that
# the job is not cut before its transcription times out on its own.
TRANSCRIPTION_JOB_MARGIN_S = 300
# Likewise, an extraction job downloads the file (up to ``max_upload_bytes``) before its sandbox
# runs for at most ``extraction_wall_time_s``, then records the text: the job time limit leaves it
# this much more, so that the extraction fails with its own wall-time error, not a generic one.
EXTRACTION_JOB_MARGIN_S = 300
# Unless set, a file is re-queued as stale after 15 minutes ``processing``, or this long after the
# longest run the limits allow (an extraction, a transcription job), whichever is later.
PROCESSING_STALE_AFTER_S = 900
PROCESSING_STALE_MARGIN_S = 300


class Secret:
    """A string that does not reveal itself in ``repr``/``str``; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(Exception):
    """Raised when the environment holds an invalid setting; the message names the variable."""


def _one_mailbox(value: str) -> bool:
    """Whether ``value`` is exactly one mailbox (``Whalli, Inc. <a@b>`` is two, ``Whalli`` and
    ``Inc. <a@b>``: the envelope sender would be ``Whalli``)."""
    found = getaddresses([value])
    return len(found) == 1 and found[0][1].count("@") == 1 and "" not in found[0][1].split("@")


_ROOT_PATH = re.compile(r"(/(?!\.+(?:/|$))[A-Za-z0-9._~-]+)+")  # no . or .. segment


def _http_url(value: str, *, origin: bool = False) -> bool:
    """Whether ``value`` is an http(s) URL with a host; with ``origin``, nothing after the
    host (no path, query or credentials)."""
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        return False
    return not origin or not (url.path not in ("", "/") or url.query or url.username)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 3001
    # The path the API is served under, when a proxy in front mounts it below one and strips
    # it from each request ("/whalli": clients call /whalli/api/...): the links the API
    # answers (a reply's stream, a share, a notification's) lead back under it.
    root_path: str = ""
    web_workers: int = 1
    # How long the API keeps an idle client connection open. Longer than the idle timeout of
    # any proxy in front (Traefik's is 90 s in infra/): a server that closes first races the
    # proxy's next request on that connection, which then fails with a reset (a 502).
    http_keep_alive_s: int = 120
    # On SIGTERM the API first drains this many seconds: readiness answers 503 (a load balancer
    # takes the process out of its pool) while requests are still served; then it shuts down.
    # Set it above the balancer's check interval (Traefik's in infra/: 5 s); 0: stop at once.
    shutdown_drain_s: float = 0.0
    # Chat starts that come together run this many at a time per process, in arrival order
    # (entrypoints/http/admission.py), each waiting at most chat_start_max_wait_s for its
    # turn; 0: all at once.
    chat_start_slots: int = 2
    chat_start_max_wait_s: float = 0.025
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_dir: str = "logs"
    log_json: bool = True
    data_dir: str = ".whalli"

    # External servers; when unset, the embedded stack under data_dir is used.
    database_url: Secret | None = None
    database_pool_min: int = 1
    database_pool_max: int = 10
    # how long one statement (or commit) may wait for the server before it is given up, and
    # how long a request waits for a free connection of the pool
    database_io_timeout_s: float = 30.0
    database_acquire_timeout_s: float = 10.0
    redis_url: Secret | None = None
    s3_endpoint: str | None = None
    s3_access_key: Secret | None = None
    s3_secret_key: Secret | None = None
    s3_bucket: str = "whalli"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    # Where browsers reach the store (a presigned download URL is signed for this address);
    # unset: S3_ENDPOINT's, right when the API and the browsers see the store at one address.
    s3_public_url: str | None = None

    queue_name: str = "whalli"
    worker_threads: int = 4
    # The worker serves its Prometheus metrics at /metrics on this port (0: not served), behind
    # the same bearer token as /api/metrics; on this address (0.0.0.0 in a container).
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    job_max_retries: int = 5
    job_min_backoff_ms: int = 1000
    job_max_backoff_ms: int = 300_000

    metrics_token: Secret | None = None
    metrics_dir: str = ""
    request_timeout_s: float = 30.0

    # Identity: HS256 access tokens (secret >= 32 bytes), opaque refresh tokens, argon2id.
    jwt_secret: Secret | None = None
    jwt_issuer: str = "whalli"
    jwt_audience: str = "whalli-api"
    access_token_ttl_s: int = 900
    refresh_token_ttl_days: int = 30
    # A spent refresh token presented again within this many seconds of its use (two tabs
    # refreshing at once) gets a second successor instead of ending the session; 0 turns it off.
    refresh_token_reuse_grace_s: float = 10.0
    # How long a password reset link works (it also stops at its first use).
    password_reset_ttl_s: int = 1800
    # How long an emailed link verifying an account's address works.
    email_verification_ttl_s: int = 86_400
    password_hash_memory_kib: int = 19_456
    password_hash_time_cost: int = 2
    # An API key's last use is written at most once per this interval (0: on every request).
    api_key_last_used_interval_s: float = 60.0
    # How long a process trusts what it read of a credential while the user's credential
    # version holds (``PrincipalCache``); 0: the database is read on every request.
    credential_cache_s: float = 5.0
    # New passwords are checked against the bundled list of common passwords, and also against
    # Have I Been Pwned's range API at this base URL when one is set (off by default; e.g.
    # https://api.pwnedpasswords.com). It is asked with this timeout; failing, it blocks nothing.
    pwned_passwords_url: str = ""
    pwned_passwords_timeout_s: float = 2.0

    # OAuth sign-in (GitHub, Google): a provider without a client id is disabled. The callback
    # is {oauth_redirect_base_url}/api/auth/oauth/{provider}/callback (register it with the
    # provider); after sign-in the browser goes to web_url with the tokens in the fragment.
    web_url: str = "http://localhost:3000"
    # The origins a browser may call the API from (CORS), comma-separated: "*" for any (an
    # OpenAI client in a browser), empty for web_url's alone. Credentials are bearer tokens
    # and API keys, never cookies: a page can only use the ones it holds.
    cors_origins: str = ""
    oauth_redirect_base_url: str = "http://127.0.0.1:3001"
    oauth_timeout_s: float = 10.0
    github_client_id: str = ""
    github_client_secret: Secret | None = None
    github_authorize_url: str = "https://github.com/login/oauth/authorize"
    github_token_url: str = "https://github.com/login/oauth/access_token"  # noqa: S105
    github_api_url: str = "https://api.github.com"
    google_client_id: str = ""
    google_client_secret: Secret | None = None
    google_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105
    google_userinfo_url: str = "https://openidconnect.googleapis.com/v1/userinfo"

    # Rate limits (shared in Redis). Login limits are "COUNT/SECONDS"; trusted proxies are CIDRs
    # whose X-Forwarded-For is believed. Fail open: requests pass while Redis is unreachable.
    rate_limit_enabled: bool = True
    rate_limit_fail_open: bool = True
    rate_limit_user_per_min: int = 100
    rate_limit_ip_per_min: int = 20
    rate_limit_login_per_account_ip: str = "5/60"
    rate_limit_login_per_ip: str = "30/900"
    trusted_proxies: str = ""

    # Models: the catalog file (default: catalog/models.toml in the repo) and the providers'
    # keys; a provider without a key hides its models. dev/echo needs no key, only dev_models.
    catalog_path: str = ""
    dev_models: bool = False
    openai_api_key: Secret | None = None
    anthropic_api_key: Secret | None = None
    xai_api_key: Secret | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com"
    # Ask Anthropic to cache each request's prompt for the conversation's next turn (reads
    # billed at a tenth of the input price, writes at 1.25 times it)
    anthropic_prompt_cache: bool = True
    # How long Anthropic keeps what it caches: "5m" (renewed on each read) or "1h" for
    # conversations whose turns are further apart (its writes billed at twice the input price)
    anthropic_prompt_cache_ttl: Literal["5m", "1h"] = "5m"
    xai_base_url: str = "https://api.x.ai/v1"
    # Any OpenAI-compatible server (Ollama, vLLM, llama.cpp, OpenRouter): on when a URL is set.
    openai_compatible_base_url: str = ""
    openai_compatible_api_key: Secret | None = None
    # Voice transcription: OpenAI's /audio/transcriptions (or a self-hosted server speaking it,
    # faster-whisper-server, LocalAI). Unset URL and key: OpenAI's, with the OpenAI key (never
    # sent to another URL); neither a key nor a URL: off (audio uploads refused).
    transcription_model: str = "whisper-1"
    transcription_base_url: str = ""
    transcription_api_key: Secret | None = None
    transcription_timeout_s: float = 300.0
    # OpenAI's limit per file: a larger audio file fails (not retried)
    transcription_max_bytes: int = 25 * 1024 * 1024
    # Recurring web searches: "searxng" (its instance at search_base_url), "brave" (its key in
    # search_api_key; its API unless search_base_url says otherwise) or unset: off (no
    # subscription can be made). The worker's scheduler queues due ones every interval (0: off).
    search_provider: Literal["", "searxng", "brave"] = ""
    search_base_url: str = ""
    search_api_key: Secret | None = None
    search_timeout_s: float = 15.0
    search_schedule_interval_s: float = 60.0
    # Outgoing email (copies of notifications); unset host: off (in-app notifications only).
    # Port 0: by smtp_tls (587 starttls, 465 ssl, 25 none).
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_username: str = ""
    smtp_password: Secret | None = None
    smtp_from: str = ""
    smtp_tls: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_timeout_s: float = 30.0
    # Development: without an SMTP host, emails are written as .eml files to this folder
    # (``whalli dev`` sets it to <data_dir>/outbox); unset: no email.
    email_outbox_dir: str = ""

    # Chat: provider retries/timeouts (seconds), the identical-prompt cache, session lifetime.
    provider_max_attempts: int = 3
    provider_connect_timeout_s: float = 10.0
    provider_first_token_timeout_s: float = 60.0
    # A reasoning model's (catalog ``reasoning = true``): it may think for minutes first
    provider_reasoning_first_token_timeout_s: float = 600.0
    provider_idle_timeout_s: float = 30.0
    chat_cache_ttl_s: int = 3600
    # One identical-prompt cache for every tenant (false: one per project, and per user on /v1).
    chat_cache_shared: bool = False
    chat_session_ttl_s: int = 600
    chat_stream_ttl_s: int = 900
    chat_heartbeat_s: float = 15.0
    # 0: a reply keeps generating after every client left (and is saved); N: stop it after N s.
    chat_cancel_abandoned_after_s: float = 0.0
    # A long reply's text so far is stored in its message this often (0 = never).
    chat_progress_every_s: float = 5.0
    # Automatic chat titles, written by a worker job after a new chat's first reply: "model"
    # (the model that wrote that reply), "off", or a catalog model id (checked at start-up).
    chat_titles: str = "model"
    # The worker's reply sweeper (0 s interval = off) ends as failed the replies still pending
    # or streaming with no update (no progress checkpoint) for this long: their API process
    # died mid-generation.
    reply_sweep_interval_s: float = 300.0
    reply_abandoned_after_s: int = 900

    # Files, extraction worker: Tesseract languages, the text cap, the sandbox's wall time and
    # memory per file, where downloads are kept while read ("" = the system's temp directory);
    # the sweeper re-queues extractions left pending/processing (0 s interval = off); a chat
    # start waits this long for a file still being extracted; worker liveness (heartbeat,
    # maintenance per million broker commands) and the deliveries of a job that kills workers.
    ocr_languages: str = "eng"
    extraction_max_chars: int = 1_000_000
    extraction_wall_time_s: float = 120.0
    extraction_memory_mb: int = 1024
    extraction_temp_dir: str = ""
    extraction_sweep_interval_s: float = 60.0
    extraction_stale_after_s: int = 300
    # unset: derived from the limits it must exceed (processing_stale_after_s)
    extraction_processing_stale_after_s: int | None = None
    chat_attachment_wait_s: float = 5.0
    worker_heartbeat_timeout_ms: int = 60_000
    worker_maintenance_chance: int = 1_000
    job_max_deliveries: int = 3

    # Files: the largest upload accepted (bytes); the request answers 413 once it is crossed.
    max_upload_bytes: int = 50 * 1024 * 1024
    # Files: a status feed (GET /api/files/{id}/events) reads the file this often, and ends
    # after this long (its heartbeat is chat_heartbeat_s).
    file_events_poll_s: float = 0.5
    file_events_max_lifetime_s: float = 600.0

    @property
    def enabled_providers(self) -> frozenset[str]:
        keys = {"openai": self.openai_api_key, "anthropic": self.anthropic_api_key}
        keys["xai"] = self.xai_api_key
        enabled = {name for name, key in keys.items() if key}
        if self.openai_compatible_base_url:
            enabled.add("openai-compatible")
        if self.dev_models:
            enabled.add("dev")
        return frozenset(enabled)

    @property
    def longest_job_s(self) -> float:
        """The longest a job may legitimately run given the limits: a transcription job (its
        timeout and download margin) or an extraction job (its wall time and download margin).
        The worker's job time limit is at least this; the stale threshold stays beyond it."""
        transcription_s = self.transcription_timeout_s + TRANSCRIPTION_JOB_MARGIN_S
        extraction_s = self.extraction_wall_time_s + EXTRACTION_JOB_MARGIN_S
        return max(transcription_s, extraction_s)

    @property
    def processing_stale_after_s(self) -> int:
        """After how long a file still ``processing`` is stale (its worker died): the explicit
        setting, else 900 s, raised to stay ``PROCESSING_STALE_MARGIN_S`` above the longest
        running job the limits allow (:attr:`longest_job_s`), so that raising a limit alone
        never makes a running job look stale."""
        if self.extraction_processing_stale_after_s is not None:
            return self.extraction_processing_stale_after_s
        longest = math.ceil(self.longest_job_s)
        return max(PROCESSING_STALE_AFTER_S, longest + PROCESSING_STALE_MARGIN_S)

    @property
    def transcription_endpoint(self) -> tuple[str, Secret | None] | None:
        """Where audio is transcribed and the key sent there; None: transcription is off. The
        OpenAI key goes only to OpenAI's base URL, never to another server."""
        url = self.transcription_base_url or self.openai_base_url
        key = self.transcription_api_key
        if key is None and url.rstrip("/") == self.openai_base_url.rstrip("/"):
            key = self.openai_api_key
        if not self.transcription_base_url and not key:
            return None
        return url, key

    def __post_init__(self) -> None:
        for name in (
            "port", "web_workers", "http_keep_alive_s", "database_pool_min", "database_pool_max",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        if not 0 <= self.shutdown_drain_s <= 300:
            raise ConfigError(f"{PREFIX}SHUTDOWN_DRAIN_S must be between 0 and 300")
        if not 0 <= self.chat_start_slots <= 1000:
            raise ConfigError(f"{PREFIX}CHAT_START_SLOTS must be between 0 and 1000")
        if not 0 <= self.chat_start_max_wait_s <= 10:
            raise ConfigError(f"{PREFIX}CHAT_START_MAX_WAIT_S must be between 0 and 10")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{PREFIX}PORT must be between 1 and 65535")
        if self.root_path and not _ROOT_PATH.fullmatch(self.root_path):
            raise ConfigError(
                f"{PREFIX}ROOT_PATH must be a path such as /whalli: a leading slash, no trailing "
                "one, letters, digits and . _ ~ - between slashes"
            )
        if self.database_pool_min > self.database_pool_max:
            raise ConfigError(
                f"{PREFIX}DATABASE_POOL_MIN must not exceed {PREFIX}DATABASE_POOL_MAX"
            )
        if self.s3_endpoint is not None and not (self.s3_access_key and self.s3_secret_key):
            raise ConfigError(
                f"{PREFIX}S3_ENDPOINT is set, so {PREFIX}S3_ACCESS_KEY and "
                f"{PREFIX}S3_SECRET_KEY are required"
            )
        if self.s3_public_url is not None and not _http_url(self.s3_public_url, origin=True):
            raise ConfigError(
                f"{PREFIX}S3_PUBLIC_URL must be an http(s):// URL without a path, such as "
                "https://storage.example.com"
            )

        if self.max_upload_bytes < 1:
            raise ConfigError(f"{PREFIX}MAX_UPLOAD_BYTES must be at least 1")
        for name in ("database_io_timeout_s", "database_acquire_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be more than 0 seconds")
        if not 0 <= self.worker_metrics_port <= 65535:
            raise ConfigError(f"{PREFIX}WORKER_METRICS_PORT must be between 0 and 65535")
        self._check_identity()
        self._check_oauth()
        self._check_rate_limits()
        self._check_extraction()
        self._check_chat_replies()
        self._check_services()
        self._check_providers()
        self._check_searches()

    def _check_searches(self) -> None:
        if self.search_provider == "searxng" and not self.search_base_url:
            raise ConfigError(
                f"{PREFIX}SEARCH_PROVIDER is searxng, so {PREFIX}SEARCH_BASE_URL (its instance, "
                "such as http://searxng:8080) is required"
            )
        if self.search_provider == "brave" and not self.search_api_key:
            raise ConfigError(
                f"{PREFIX}SEARCH_PROVIDER is brave, so {PREFIX}SEARCH_API_KEY is required"
            )
        if self.search_base_url and not _http_url(self.search_base_url):
            raise ConfigError(f"{PREFIX}SEARCH_BASE_URL must be an http(s):// URL")
        for name in ("search_timeout_s", "smtp_timeout_s"):
            if not 0 < getattr(self, name) <= 120:
                raise ConfigError(f"{PREFIX}{name.upper()} must be more than 0 and at most 120")
        if self.search_schedule_interval_s < 0:
            raise ConfigError(f"{PREFIX}SEARCH_SCHEDULE_INTERVAL_S must not be negative")
        if not 0 <= self.smtp_port <= 65535:
            raise ConfigError(f"{PREFIX}SMTP_PORT must be between 0 and 65535")
        if self.smtp_host and "@" not in self.smtp_from:
            raise ConfigError(
                f"{PREFIX}SMTP_HOST is set, so {PREFIX}SMTP_FROM (the sender's address) is required"
            )
        if self.smtp_host and not _one_mailbox(self.smtp_from):
            raise ConfigError(
                f"{PREFIX}SMTP_FROM must be one mailbox: an address, or Name <address> with a "
                'name holding a comma in quotes ("Whalli, Inc." <alerts@example.com>)'
            )
        if any(ord(c) < 32 for c in self.smtp_host + self.smtp_from + self.smtp_username):
            raise ConfigError(f"{PREFIX}SMTP_HOST, _FROM and _USERNAME must be one line each")
        if self.email_outbox_dir and self.smtp_from and not _one_mailbox(self.smtp_from):
            raise ConfigError(f"{PREFIX}SMTP_FROM (the outbox's sender) must be one mailbox")

    @property
    def sends_email(self) -> bool:
        """Whether this server sends email: through SMTP, or to the development outbox."""
        return bool(self.smtp_host or self.email_outbox_dir)

    def _check_identity(self) -> None:
        # Bounds: OWASP's argon2id floor (19 MiB, t=2), a JWT secret as long as the HS256 output,
        # and lifetimes short enough that a leaked token does not stay useful for long.
        if self.env == "production" and self.jwt_secret is None:
            raise ConfigError(f"{PREFIX}JWT_SECRET is required in production (>= 32 random bytes)")
        token = self.metrics_token.reveal().strip() if self.metrics_token else ""
        if self.env == "production" and len(token) < MIN_METRICS_TOKEN_CHARS:
            # without it /api/metrics answers anyone who reaches the API (routes, volumes)
            raise ConfigError(
                f"{PREFIX}METRICS_TOKEN is required in production, at least "
                f"{MIN_METRICS_TOKEN_CHARS} characters (the bearer token of /api/metrics; "
                "openssl rand -hex 32)"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.reveal().encode()) < 32:
            raise ConfigError(f"{PREFIX}JWT_SECRET must be at least 32 bytes")
        for name in ("jwt_issuer", "jwt_audience"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{PREFIX}{name.upper()} must not be empty")
        if not 60 <= self.access_token_ttl_s <= 3600:
            raise ConfigError(f"{PREFIX}ACCESS_TOKEN_TTL_S must be between 60 and 3600")
        if not 1 <= self.refresh_token_ttl_days <= 365:
            raise ConfigError(f"{PREFIX}REFRESH_TOKEN_TTL_DAYS must be between 1 and 365")
        if not 0 <= self.refresh_token_reuse_grace_s <= 60:
            raise ConfigError(f"{PREFIX}REFRESH_TOKEN_REUSE_GRACE_S must be between 0 and 60")
        if not 300 <= self.password_reset_ttl_s <= 86_400:
            raise ConfigError(f"{PREFIX}PASSWORD_RESET_TTL_S must be between 300 and 86400")
        if not 600 <= self.email_verification_ttl_s <= 604_800:
            raise ConfigError(
                f"{PREFIX}EMAIL_VERIFICATION_TTL_S must be between 600 and 604800 (7 days)"
            )
        if not 19_456 <= self.password_hash_memory_kib <= 4_194_304:
            raise ConfigError(
                f"{PREFIX}PASSWORD_HASH_MEMORY_KIB must be between 19456 (19 MiB) and 4194304"
            )
        if not 2 <= self.password_hash_time_cost <= 100:
            raise ConfigError(f"{PREFIX}PASSWORD_HASH_TIME_COST must be between 2 and 100")
        if not 0 <= self.api_key_last_used_interval_s <= 86_400:
            raise ConfigError(f"{PREFIX}API_KEY_LAST_USED_INTERVAL_S must be between 0 and 86400")
        if not 0 <= self.credential_cache_s <= 60:
            raise ConfigError(f"{PREFIX}CREDENTIAL_CACHE_S must be between 0 and 60")
        if self.pwned_passwords_url and urlsplit(self.pwned_passwords_url).scheme not in (
            "http",
            "https",
        ):
            raise ConfigError(f"{PREFIX}PWNED_PASSWORDS_URL must be an http(s) URL")
        if not 0 < self.pwned_passwords_timeout_s <= 30:
            raise ConfigError(
                f"{PREFIX}PWNED_PASSWORDS_TIMEOUT_S must be more than 0 and at most 30 seconds"
            )

    def _check_rate_limits(self) -> None:
        for name in ("rate_limit_user_per_min", "rate_limit_ip_per_min"):
            # the Redis limiter packs counts into 20 bits of its one-integer reply
            if not 1 <= getattr(self, name) <= 1_048_575:
                raise ConfigError(f"{PREFIX}{name.upper()} must be between 1 and 1048575")
        for name in ("rate_limit_login_per_account_ip", "rate_limit_login_per_ip"):
            parse_count_per_seconds(getattr(self, name), f"{PREFIX}{name.upper()}")
        try:
            for cidr in split_csv(self.trusted_proxies):
                ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{PREFIX}TRUSTED_PROXIES must be a comma list of CIDRs") from None

    def _check_extraction(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*", self.ocr_languages):
            raise ConfigError(f"{PREFIX}OCR_LANGUAGES must look like eng or eng+deu")
        for name in (
            "extraction_max_chars", "extraction_memory_mb", "extraction_stale_after_s",
            "worker_heartbeat_timeout_ms", "job_max_deliveries",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        if self.extraction_wall_time_s <= 0:
            raise ConfigError(f"{PREFIX}EXTRACTION_WALL_TIME_S must be more than 0")
        # only an explicit value: the derived one always exceeds both limits
        stale_after_s = self.extraction_processing_stale_after_s
        extraction_job_s = self.extraction_wall_time_s + EXTRACTION_JOB_MARGIN_S
        if stale_after_s is not None and stale_after_s <= extraction_job_s:
            raise ConfigError(
                f"{PREFIX}EXTRACTION_PROCESSING_STALE_AFTER_S must exceed "
                f"{PREFIX}EXTRACTION_WALL_TIME_S plus {EXTRACTION_JOB_MARGIN_S} s for the "
                f"file's download ({extraction_job_s:g} s: an extraction job may run that long, "
                "and a running one is not stale)"
            )
        if self.extraction_sweep_interval_s < 0:
            raise ConfigError(f"{PREFIX}EXTRACTION_SWEEP_INTERVAL_S must not be negative")
        if not 0 <= self.chat_attachment_wait_s <= 60:
            raise ConfigError(f"{PREFIX}CHAT_ATTACHMENT_WAIT_S must be between 0 and 60")
        if not 0 <= self.worker_maintenance_chance <= 1_000_000:
            raise ConfigError(f"{PREFIX}WORKER_MAINTENANCE_CHANCE must be between 0 and 1000000")
        if not 0 < self.file_events_poll_s <= 60:
            raise ConfigError(f"{PREFIX}FILE_EVENTS_POLL_S must be more than 0 and at most 60")
        if not 0 < self.file_events_max_lifetime_s <= 86_400:
            raise ConfigError(
                f"{PREFIX}FILE_EVENTS_MAX_LIFETIME_S must be more than 0 and at most 86400"
            )

    def _check_chat_replies(self) -> None:
        # a heartbeat of 0 would make every SSE reader poll without waiting
        if not 0 < self.chat_heartbeat_s <= 3600:
            raise ConfigError(f"{PREFIX}CHAT_HEARTBEAT_S must be more than 0 and at most 3600")
        for name in ("chat_session_ttl_s", "chat_stream_ttl_s", "chat_cache_ttl_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        # a reader of a finished reply, its session still alive, must still find its stream
        if self.chat_stream_ttl_s < self.chat_session_ttl_s:
            raise ConfigError(
                f"{PREFIX}CHAT_STREAM_TTL_S must be at least {PREFIX}CHAT_SESSION_TTL_S"
            )
        if self.chat_progress_every_s < 0:
            raise ConfigError(f"{PREFIX}CHAT_PROGRESS_EVERY_S must not be negative")
        if not self.chat_titles.strip():
            raise ConfigError(
                f"{PREFIX}CHAT_TITLES must be 'model', 'off' or a model id of the catalog"
            )
        if self.reply_sweep_interval_s < 0:
            raise ConfigError(f"{PREFIX}REPLY_SWEEP_INTERVAL_S must not be negative")
        if self.reply_abandoned_after_s < 1:
            raise ConfigError(f"{PREFIX}REPLY_ABANDONED_AFTER_S must be at least 1")

    @property
    def login_limit_per_account_ip(self) -> tuple[int, int]:
        """``(count, window_seconds)`` from ``rate_limit_login_per_account_ip``."""
        return parse_count_per_seconds(self.rate_limit_login_per_account_ip)

    @property
    def login_limit_per_ip(self) -> tuple[int, int]:
        """``(count, window_seconds)`` from ``rate_limit_login_per_ip``."""
        return parse_count_per_seconds(self.rate_limit_login_per_ip)

    def _check_services(self) -> None:
        # NaN passes every comparison (a sweep interval of nan turned its sweeper off): no
        # number setting may be other than finite
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{PREFIX}{name.upper()} must be a finite number")
        # URLs are checked without echoing them: they hold passwords
        if self.database_url is not None:
            try:  # libpq's own parser: a postgresql:// URL or "host=... dbname=..." pairs
                conninfo_to_dict(self.database_url.reveal())
            except psycopg.Error:
                raise ConfigError(
                    f"{PREFIX}DATABASE_URL must be a postgresql:// URL "
                    "(postgresql://user:password@host:5432/database) or libpq key=value pairs"
                ) from None
        if self.redis_url is not None:
            url = urlsplit(self.redis_url.reveal())
            if url.scheme not in ("redis", "rediss", "unix") or not (url.hostname or url.path):
                raise ConfigError(
                    f"{PREFIX}REDIS_URL must be a redis://, rediss:// or unix:// URL "
                    "(redis://:password@host:6379/0)"
                )
        if self.worker_threads < 1:
            raise ConfigError(f"{PREFIX}WORKER_THREADS must be at least 1")

    def _check_providers(self) -> None:
        if self.provider_max_attempts < 1:
            raise ConfigError(f"{PREFIX}PROVIDER_MAX_ATTEMPTS must be at least 1")
        for name in (
            "provider_connect_timeout_s", "provider_first_token_timeout_s",
            "provider_reasoning_first_token_timeout_s", "provider_idle_timeout_s",
        ):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be more than 0 seconds")
        if not 0 < self.transcription_timeout_s <= 3600:
            raise ConfigError(
                f"{PREFIX}TRANSCRIPTION_TIMEOUT_S must be more than 0 and at most 3600"
            )
        if self.transcription_max_bytes < 1:
            raise ConfigError(f"{PREFIX}TRANSCRIPTION_MAX_BYTES must be at least 1")
        stale_after_s = self.extraction_processing_stale_after_s
        transcription_job_s = self.transcription_timeout_s + TRANSCRIPTION_JOB_MARGIN_S
        if stale_after_s is not None and stale_after_s <= transcription_job_s:
            raise ConfigError(
                f"{PREFIX}EXTRACTION_PROCESSING_STALE_AFTER_S must exceed "
                f"{PREFIX}TRANSCRIPTION_TIMEOUT_S plus {TRANSCRIPTION_JOB_MARGIN_S} s for the "
                f"recording's download ({transcription_job_s:g} s: a transcription job may run "
                "that long, and a running one is not stale)"
            )
        if not self.transcription_model.strip():
            raise ConfigError(f"{PREFIX}TRANSCRIPTION_MODEL must not be empty")
        for name in (
            "openai_base_url",
            "anthropic_base_url",
            "xai_base_url",
            "openai_compatible_base_url",
            "transcription_base_url",
        ):
            value = getattr(self, name)
            if name in ("openai_compatible_base_url", "transcription_base_url") and not value:
                continue  # unset: that provider is off (transcription: OpenAI's)
            if not _http_url(value):
                raise ConfigError(
                    f"{PREFIX}{name.upper()} must be an http(s):// URL, such as "
                    "http://localhost:11434/v1"
                )

    def _check_oauth(self) -> None:
        for name in (
            "web_url", "oauth_redirect_base_url", "github_authorize_url", "github_token_url",
            "github_api_url", "google_authorize_url", "google_token_url", "google_userinfo_url",
        ):  # fmt: skip
            if urlsplit(getattr(self, name)).scheme not in ("http", "https"):
                raise ConfigError(f"{PREFIX}{name.upper()} must be an http(s) URL")
        if not 0 < self.oauth_timeout_s <= 120:
            raise ConfigError(f"{PREFIX}OAUTH_TIMEOUT_S must be between 0 and 120 seconds")
        for provider in ("github", "google"):
            if getattr(self, f"{provider}_client_id") and not getattr(
                self, f"{provider}_client_secret"
            ):
                raise ConfigError(
                    f"{PREFIX}{provider.upper()}_CLIENT_ID is set, so "
                    f"{PREFIX}{provider.upper()}_CLIENT_SECRET is required"
                )

    @property
    def cors_allowed_origins(self) -> list[str]:
        """``cors_origins``'s origins, or web_url's origin when it names none."""
        named = split_csv(self.cors_origins)
        if named:
            return ["*"] if "*" in named else [o.rstrip("/") for o in named]
        web = urlsplit(self.web_url)
        return [f"{web.scheme}://{web.netloc}"]

    @property
    def uses_embedded_services(self) -> bool:
        return self.database_url is None or self.redis_url is None or self.s3_endpoint is None


def split_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_count_per_seconds(value: str, variable: str = "limit") -> tuple[int, int]:
    """``"5/60"`` -> ``(5, 60)``: at most 5 in any 60 seconds; both at least 1."""
    count, sep, seconds = value.partition("/")
    try:
        parsed = (int(count), int(seconds))
    except ValueError:
        parsed = (0, 0)
    if not sep or min(parsed) < 1:
        raise ConfigError(f"{variable} must be COUNT/SECONDS, both at least 1 (e.g. 5/60)")
    return parsed


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is Secret:
        if isinstance(obj, str):
            # a key pasted or read from a file with its newline would break every request's
            # headers (and a URL its connection): surrounding whitespace is never meant
            return Secret(obj.strip())
        raise msgspec.ValidationError("Expected a string")
    raise NotImplementedError


_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_settings(
    environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Build :class:`Settings` from the environment (which wins) and an optional ``.env`` file."""
    source: dict[str, str] = {}
    if dotenv is not None:
        source.update(read_dotenv(dotenv))
    source.update(os.environ if environ is None else environ)
    raw: dict[str, str] = {}
    fields = set(Settings.__struct_fields__)
    for key, value in source.items():
        if key.startswith(PREFIX):
            name = key[len(PREFIX) :].lower()
            if name in fields and value != "":
                raw[name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise ConfigError(_name_the_variable(str(e))) from None


def _name_the_variable(message: str) -> str:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.port`"; name the variable instead and
    # never echo the value, which could be a secret.
    match = re.search(r"at `\$\.([a-z0-9_]+)`", message)
    reason = message.split(" - at ")[0]
    if match:
        return f"{PREFIX}{match.group(1).upper()}: {reason}"
    return f"invalid settings: {reason}"


def redact_url(url: str) -> str:
    """Drop the password from a URL so it can be printed or logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
