"""The one composition root: settings → gateways → adapters → services (logging is set up by
the entrypoint that owns the process: `serve`, `worker`, CLI).

Nothing connects at import time or when the container is built: pools and clients are
``Resource`` providers opened by ``init_resources()`` and closed by ``shutdown_resources()``.
Tests swap adapters with ``container.adapters.<name>.override(...)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
from dependency_injector import containers, providers
from minio import Minio

from whalli.adapters.ai._streaming import StreamPolicy
from whalli.adapters.ai.anthropic import AnthropicChatModel
from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.adapters.ai.openai_transcriber import OpenAITranscriber
from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.adapters.crypto.argon2_hasher import Argon2PasswordHasher
from whalli.adapters.crypto.email_verifications import HmacEmailVerificationTokens
from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.crypto.password_resets import HmacPasswordResetTokens
from whalli.adapters.crypto.stream_passes import HmacStreamPasses
from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import DramatiqJobQueue
from whalli.adapters.email.outbox import OutboxEmailSender
from whalli.adapters.email.smtp import SmtpEmailSender
from whalli.adapters.extraction.pdf_ocr import PdfOcrTextExtractor
from whalli.adapters.oauth.github import GitHubOAuthProvider
from whalli.adapters.oauth.google import GoogleOAuthProvider
from whalli.adapters.outbound_http import new_http_client
from whalli.adapters.passwords.chain import PasswordScreenChain
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.adapters.passwords.pwned_range import PwnedPasswordsScreen
from whalli.adapters.postgres.chat_search import PostgresChatSearch
from whalli.adapters.postgres.health import PostgresHealthProbe
from whalli.adapters.postgres.pool import create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.prometheus.chat_metrics import PrometheusChatMetrics
from whalli.adapters.prometheus.transcription_metrics import PrometheusTranscriptionMetrics
from whalli.adapters.redis.cache import RedisCache
from whalli.adapters.redis.chat_sessions import RedisChatSessionStore
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.credential_versions import RedisCredentialVersions
from whalli.adapters.redis.health import RedisHealthProbe
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.adapters.redis.reply_relay import RelayedReplyStream
from whalli.adapters.redis.reply_stream import RedisReplyStream
from whalli.adapters.redis.resp import create_resp_client
from whalli.adapters.s3.blob_storage import S3BlobStorage
from whalli.adapters.s3.client import create_minio
from whalli.adapters.s3.health import S3HealthProbe
from whalli.adapters.search.brave import BASE_URL as BRAVE_BASE_URL
from whalli.adapters.search.brave import BraveWebSearch
from whalli.adapters.search.searxng import SearxngWebSearch
from whalli.adapters.system.clock import SystemClock
from whalli.adapters.system.ids import UuidGenerator
from whalli.config import ConfigError, Secret, Settings
from whalli.domain.model.catalog import ModelCatalog
from whalli.domain.model.chat_sessions import THIS_PROCESS
from whalli.domain.model.chat_titles import (
    NEVER_TITLING_PROVIDERS,
    TITLES_BY_REPLY_MODEL,
    TITLES_OFF,
    TitlePolicy,
)
from whalli.domain.model.errors import ModelNotFound
from whalli.domain.model.jobs import (
    ExtractAttachment,
    JobAbandoned,
    Ping,
    RunSearchSubscription,
    SendEmailVerification,
    SendPasswordReset,
    TitleChat,
)
from whalli.domain.model.transcription_models import TranscriptionModel
from whalli.domain.services.admin.list_users import ListUsersHandler
from whalli.domain.services.admin.summarize_feedback import SummarizeFeedbackHandler
from whalli.domain.services.admin.update_user import UpdateUserHandler
from whalli.domain.services.api_keys.create_api_key import CreateApiKeyHandler
from whalli.domain.services.api_keys.list_api_keys import ListApiKeysHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKeyHandler
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.authenticate import AuthenticateHandler
from whalli.domain.services.auth.change_password import ChangePasswordHandler
from whalli.domain.services.auth.create_user import CreateUserHandler
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.auth.credential_watch import CredentialWatch
from whalli.domain.services.auth.delete_account import DeleteAccountHandler
from whalli.domain.services.auth.get_profile import GetProfileHandler
from whalli.domain.services.auth.key_owners import KeyOwners
from whalli.domain.services.auth.login import LoginHandler
from whalli.domain.services.auth.logout import LogoutHandler
from whalli.domain.services.auth.logout_all import LogoutAllHandler
from whalli.domain.services.auth.oauth_callback import CompleteOAuth
from whalli.domain.services.auth.oauth_links import OAuthLinks
from whalli.domain.services.auth.oauth_start import StartOAuth
from whalli.domain.services.auth.principal_cache import PrincipalCache
from whalli.domain.services.auth.refresh_session import RefreshSessionHandler
from whalli.domain.services.auth.register import RegisterHandler
from whalli.domain.services.auth.request_email_verification import (
    RequestEmailVerificationHandler,
)
from whalli.domain.services.auth.request_password_reset import RequestPasswordResetHandler
from whalli.domain.services.auth.reset_password import ResetPasswordHandler
from whalli.domain.services.auth.send_email_verification import SendEmailVerificationHandler
from whalli.domain.services.auth.send_password_reset import SendPasswordResetHandler
from whalli.domain.services.auth.update_profile import UpdateProfileHandler
from whalli.domain.services.auth.verify_email import VerifyEmailHandler
from whalli.domain.services.chat.attach_stream import AttachStreamHandler
from whalli.domain.services.chat.complete import CompleteChatHandler
from whalli.domain.services.chat.generate_reply import GenerateReplyHandler, ReplySettings
from whalli.domain.services.chat.read_reply import ReadReplyHandler
from whalli.domain.services.chat.regenerate_reply import RegenerateReplyHandler
from whalli.domain.services.chat.start_chat import StartChatHandler
from whalli.domain.services.chat.stop_generation import StopGenerationHandler
from whalli.domain.services.chat.stop_replies import ReplyStopper
from whalli.domain.services.chat.streaming import StopBoard
from whalli.domain.services.chats.delete_chat import DeleteChatHandler
from whalli.domain.services.chats.fail_abandoned_replies import FailAbandonedReplies
from whalli.domain.services.chats.fork_chat import ForkChatHandler
from whalli.domain.services.chats.get_chat import GetChatHandler
from whalli.domain.services.chats.import_chats import ImportChatsHandler
from whalli.domain.services.chats.list_chats import ListChatsHandler
from whalli.domain.services.chats.list_shares import ListChatSharesHandler
from whalli.domain.services.chats.rate_reply import RateReplyHandler
from whalli.domain.services.chats.read_shared_chat import ReadSharedChatHandler
from whalli.domain.services.chats.reply_versions import (
    ListReplyVersionsHandler,
    RestoreReplyVersionHandler,
)
from whalli.domain.services.chats.revoke_share import RevokeChatShareHandler
from whalli.domain.services.chats.search_chats import SearchChatsHandler
from whalli.domain.services.chats.share_chat import ShareChatHandler
from whalli.domain.services.chats.title_chat import TitleChatHandler
from whalli.domain.services.chats.update_chat import UpdateChatHandler
from whalli.domain.services.check_readiness import CheckReadiness
from whalli.domain.services.files.delete_attachment import DeleteAttachmentHandler
from whalli.domain.services.files.extract_attachment import ExtractAttachmentHandler
from whalli.domain.services.files.get_attachment import GetAttachmentHandler
from whalli.domain.services.files.list_attachments import ListAttachmentsHandler
from whalli.domain.services.files.open_attachment_content import OpenAttachmentContentHandler
from whalli.domain.services.files.requeue_stale import RequeueStaleAttachments
from whalli.domain.services.files.upload_attachment import UploadAttachmentHandler
from whalli.domain.services.files.watch_attachment import WatchAttachmentHandler
from whalli.domain.services.models.list_models import ListModelsHandler
from whalli.domain.services.notifications.count_unread import CountUnreadNotificationsHandler
from whalli.domain.services.notifications.list_notifications import ListNotificationsHandler
from whalli.domain.services.notifications.mark_read import (
    MarkAllNotificationsReadHandler,
    MarkNotificationReadHandler,
)
from whalli.domain.services.presets.create_preset import CreatePresetHandler
from whalli.domain.services.presets.delete_preset import DeletePresetHandler
from whalli.domain.services.presets.list_presets import ListPresetsHandler
from whalli.domain.services.presets.update_preset import UpdatePresetHandler
from whalli.domain.services.projects.add_member import AddMemberHandler
from whalli.domain.services.projects.change_member_role import ChangeMemberRoleHandler
from whalli.domain.services.projects.create_project import CreateProjectHandler
from whalli.domain.services.projects.delete_project import DeleteProjectHandler
from whalli.domain.services.projects.get_project import GetProjectHandler
from whalli.domain.services.projects.list_member_profiles import ListMemberProfilesHandler
from whalli.domain.services.projects.list_projects import ListProjectsHandler
from whalli.domain.services.projects.remove_member import RemoveMemberHandler
from whalli.domain.services.projects.rename_project import RenameProjectHandler
from whalli.domain.services.rate_limits import RateLimit, RateLimitPolicy, RequestLimits
from whalli.domain.services.record_ping import RecordPing
from whalli.domain.services.searches.create_search import CreateSearchHandler
from whalli.domain.services.searches.delete_search import DeleteSearchHandler
from whalli.domain.services.searches.get_search import GetSearchHandler
from whalli.domain.services.searches.list_search_results import ListSearchResultsHandler
from whalli.domain.services.searches.list_searches import ListSearchesHandler
from whalli.domain.services.searches.record_abandoned_run import (
    RecordAbandonedRun,
    RecordAbandonedRunHandler,
)
from whalli.domain.services.searches.run_search import RunSearchHandler
from whalli.domain.services.searches.schedule_due import ScheduleDueSearches
from whalli.domain.services.searches.update_search import UpdateSearchHandler
from whalli.domain.services.transcriptions.transcribe_speech import TranscribeSpeechHandler
from whalli.domain.services.usage.summarize_usage import SummarizeUsageHandler
from whalli.ports.chat_model import ChatModel
from whalli.ports.email_sender import EmailSender
from whalli.ports.oauth_provider import OAuthProvider
from whalli.ports.transcriber import Transcriber
from whalli.ports.web_search import WebSearch


def _reveal(secret: Secret | None) -> str:
    if secret is None:
        raise RuntimeError("a required server URL or key is not configured")
    return secret.reveal()


def _jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret is None:
        raise RuntimeError("WHALLI_JWT_SECRET is not configured")
    return settings.jwt_secret.reveal()


def _catalog_path(settings: Settings) -> str:
    return settings.catalog_path or str(default_catalog_path())


async def create_http_client(
    timeout_s: float | None, max_connections: int = 100
) -> AsyncIterator[httpx.AsyncClient]:
    """A pooled client for outbound calls. OAuth uses a client-wide timeout; the AI providers'
    client has none (``timeout_s=None``): their adapters bound connect, first-token and idle
    gaps per call, and many long streams share it."""
    client = new_http_client(
        timeout=timeout_s, max_connections=max_connections, max_keepalive_connections=100
    )
    try:
        yield client
    finally:
        await client.aclose()


def build_oauth_providers(
    settings: Settings, client: httpx.AsyncClient
) -> dict[str, OAuthProvider]:
    """The sign-in providers that have a client id (the others answer 404)."""
    found: dict[str, OAuthProvider] = {}
    if settings.github_client_id and settings.github_client_secret:
        found["github"] = GitHubOAuthProvider(
            client,
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret.reveal(),
            authorize_url=settings.github_authorize_url,
            token_url=settings.github_token_url,
            api_url=settings.github_api_url,
            timeout_s=settings.oauth_timeout_s,
        )
    if settings.google_client_id and settings.google_client_secret:
        found["google"] = GoogleOAuthProvider(
            client,
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.reveal(),
            authorize_url=settings.google_authorize_url,
            token_url=settings.google_token_url,
            userinfo_url=settings.google_userinfo_url,
            timeout_s=settings.oauth_timeout_s,
        )
    return found


def rate_limit_policy(settings: Settings) -> RateLimitPolicy:
    """The ``RequestLimits`` policy from ``WHALLI_RATE_LIMIT_*``."""
    account_ip, per_ip = settings.login_limit_per_account_ip, settings.login_limit_per_ip
    return RateLimitPolicy(
        per_user=RateLimit(limit=settings.rate_limit_user_per_min, window_seconds=60),
        per_ip=RateLimit(limit=settings.rate_limit_ip_per_min, window_seconds=60),
        login_per_account_ip=RateLimit(limit=account_ip[0], window_seconds=account_ip[1]),
        login_per_ip=RateLimit(limit=per_ip[0], window_seconds=per_ip[1]),
        fail_open=settings.rate_limit_fail_open,
        enabled=settings.rate_limit_enabled,
    )


def build_chat_models(settings: Settings, client: httpx.AsyncClient) -> dict[str, ChatModel]:
    """One adapter per configured provider; a provider without a key has none (hidden)."""
    policy = StreamPolicy(
        max_attempts=settings.provider_max_attempts,
        connect_timeout=settings.provider_connect_timeout_s,
        first_token_timeout=settings.provider_first_token_timeout_s,
        idle_timeout=settings.provider_idle_timeout_s,
        reasoning_first_token_timeout=settings.provider_reasoning_first_token_timeout_s,
    )
    models: dict[str, ChatModel] = {}
    if settings.openai_api_key:
        models["openai"] = OpenAIChatModel(
            client,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.reveal(),
            provider="openai",
            policy=policy,
        )
    if settings.xai_api_key:
        models["xai"] = OpenAIChatModel(
            client,
            base_url=settings.xai_base_url,
            api_key=settings.xai_api_key.reveal(),
            provider="xai",
            policy=policy,
        )
    if settings.openai_compatible_base_url:
        key = settings.openai_compatible_api_key
        models["openai-compatible"] = OpenAIChatModel(
            client,
            base_url=settings.openai_compatible_base_url,
            api_key=key.reveal() if key else "",
            provider="openai-compatible",
            policy=policy,
        )
    if settings.anthropic_api_key:
        models["anthropic"] = AnthropicChatModel(
            client,
            api_key=settings.anthropic_api_key.reveal(),
            base_url=settings.anthropic_base_url,
            policy=policy,
            prompt_cache=settings.anthropic_prompt_cache,
            prompt_cache_ttl=settings.anthropic_prompt_cache_ttl,
        )
    if settings.dev_models:
        models["dev"] = DevEchoChatModel()
    return models


def build_transcriber(settings: Settings, client: httpx.AsyncClient) -> Transcriber | None:
    """The speech-to-text adapter, or None when no transcription is configured."""
    endpoint = settings.transcription_endpoint
    if endpoint is None:
        return None
    url, key = endpoint
    return OpenAITranscriber(
        client,
        base_url=url,
        api_key=key.reveal() if key else "",
        model=settings.transcription_model,
        timeout_s=settings.transcription_timeout_s,
        connect_timeout_s=settings.provider_connect_timeout_s,
    )


def configured_transcription_model(settings: Settings, catalog: ModelCatalog) -> TranscriptionModel:
    """The configured speech-to-text model, with its catalog entry (price, plan) if listed."""
    return catalog.transcription_model(settings.transcription_model)


def build_web_search(settings: Settings, client: httpx.AsyncClient) -> WebSearch | None:
    """The web search adapter of ``WHALLI_SEARCH_PROVIDER``, or None: searches are off."""
    if settings.search_provider == "searxng":
        return SearxngWebSearch(
            client, base_url=settings.search_base_url, timeout_s=settings.search_timeout_s
        )
    if settings.search_provider == "brave" and settings.search_api_key:
        return BraveWebSearch(
            client,
            api_key=settings.search_api_key.reveal(),
            base_url=settings.search_base_url or BRAVE_BASE_URL,
            timeout_s=settings.search_timeout_s,
        )
    return None


def build_email_sender(settings: Settings) -> EmailSender | None:
    """The SMTP sender of ``WHALLI_SMTP_*``; without a host, the development outbox of
    ``WHALLI_EMAIL_OUTBOX_DIR``; else None: email is off."""
    if not settings.smtp_host:
        if settings.email_outbox_dir:
            sender = settings.smtp_from or "Whalli <whalli@localhost>"
            return OutboxEmailSender(settings.email_outbox_dir, sender=sender)
        return None
    password = settings.smtp_password
    return SmtpEmailSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=password.reveal() if password else "",
        timeout_s=settings.smtp_timeout_s,
    )


def reply_settings(settings: Settings) -> ReplySettings:
    return ReplySettings(
        cache_ttl=timedelta(seconds=settings.chat_cache_ttl_s),
        cache_shared=settings.chat_cache_shared,
        stream_ttl=timedelta(seconds=settings.chat_stream_ttl_s),
        progress_every_s=settings.chat_progress_every_s or None,  # 0: off
    )


def chat_title_policy(settings: Settings, catalog: Callable[[], ModelCatalog]) -> TitlePolicy:
    """``WHALLI_CHAT_TITLES`` as a policy, checked at start-up (a resource): a model id must
    name a model of the catalog whose provider is configured, else ``ConfigError``."""
    value = settings.chat_titles.strip()
    if value.lower() in (TITLES_BY_REPLY_MODEL, TITLES_OFF):
        return TitlePolicy(model=value.lower())
    try:
        spec = catalog().get(value)
    except ModelNotFound:
        raise ConfigError(
            f"WHALLI_CHAT_TITLES={value!r} is neither 'model', 'off' nor a model of the catalog"
        ) from None
    if spec.provider in NEVER_TITLING_PROVIDERS:
        raise ConfigError(f"WHALLI_CHAT_TITLES={value!r}: the development model only echoes")
    if spec.provider not in settings.enabled_providers:
        raise ConfigError(
            f"WHALLI_CHAT_TITLES={value!r}: its provider {spec.provider!r} is not configured"
        )
    return TitlePolicy(model=spec.id)


def principal_cache_for(max_age_s: float) -> PrincipalCache | None:
    """What this process remembers of credentials; none when the setting is 0 (then the
    database is read on every request, and no credential version is read)."""
    return PrincipalCache(max_age_s=max_age_s) if max_age_s > 0 else None


def abandon_after(settings: Settings) -> float | None:
    """None: a reply runs to the end when every client left (and is saved)."""
    abandoned = settings.chat_cancel_abandoned_after_s
    return abandoned if abandoned > 0 else None


def _public_minio(settings: Settings, access_key: str, secret_key: str) -> Minio | None:
    """The client that signs download URLs for ``WHALLI_S3_PUBLIC_URL`` (never contacted:
    signing is local, its region fixed), or None without one."""
    if settings.s3_public_url is None:
        return None
    return create_minio(settings.s3_public_url, access_key, secret_key, region=settings.s3_region)


def _required(value: str | None) -> str:
    if value is None:
        raise RuntimeError("WHALLI_S3_ENDPOINT is not configured")
    return value


class Gateways(containers.DeclarativeContainer):
    """Connections to the backing services, opened and closed as resources."""

    settings = providers.Dependency(instance_of=Settings)

    postgres = providers.Resource(
        create_pool,
        url=providers.Callable(lambda s: _reveal(s.database_url), settings),
        min_size=providers.Callable(lambda s: s.database_pool_min, settings),
        max_size=providers.Callable(lambda s: s.database_pool_max, settings),
        io_timeout=providers.Callable(lambda s: s.database_io_timeout_s, settings),
        acquire_timeout=providers.Callable(lambda s: s.database_acquire_timeout_s, settings),
    )
    redis = providers.Resource(
        create_redis, url=providers.Callable(lambda s: _reveal(s.redis_url), settings)
    )
    # the request path's short commands (rate limit, prompt cache, chat sessions): one
    # multiplexed connection, opened on first use (adapters/redis/resp)
    redis_lean = providers.Resource(
        create_resp_client, url=providers.Callable(lambda s: _reveal(s.redis_url), settings)
    )
    minio = providers.Singleton(
        create_minio,
        endpoint=providers.Callable(lambda s: _required(s.s3_endpoint), settings),
        access_key=providers.Callable(lambda s: _reveal(s.s3_access_key), settings),
        secret_key=providers.Callable(lambda s: _reveal(s.s3_secret_key), settings),
        secure=providers.Callable(lambda s: s.s3_secure, settings),
        region=providers.Callable(lambda s: s.s3_region, settings),
    )
    # presigned URLs only: the store's address as browsers reach it (None: ``minio``'s)
    minio_public = providers.Singleton(
        _public_minio,
        settings,
        access_key=providers.Callable(lambda s: _reveal(s.s3_access_key), settings),
        secret_key=providers.Callable(lambda s: _reveal(s.s3_secret_key), settings),
    )
    http = providers.Resource(
        create_http_client, timeout_s=providers.Callable(lambda s: s.request_timeout_s, settings)
    )
    provider_http = providers.Resource(create_http_client, timeout_s=None, max_connections=1000)
    broker = providers.Singleton(
        create_broker,
        redis_url=providers.Callable(lambda s: _reveal(s.redis_url), settings),
        namespace=providers.Callable(lambda s: s.queue_name, settings),
        max_retries=providers.Callable(lambda s: s.job_max_retries, settings),
        min_backoff_ms=providers.Callable(lambda s: s.job_min_backoff_ms, settings),
        max_backoff_ms=providers.Callable(lambda s: s.job_max_backoff_ms, settings),
        max_deliveries=providers.Callable(lambda s: s.job_max_deliveries, settings),
        heartbeat_timeout_ms=providers.Callable(lambda s: s.worker_heartbeat_timeout_ms, settings),
        maintenance_chance=providers.Callable(lambda s: s.worker_maintenance_chance, settings),
    )


class Adapters(containers.DeclarativeContainer):
    """Port implementations. Override any of these in tests to swap a technology."""

    settings = providers.Dependency(instance_of=Settings)
    gateways = providers.DependenciesContainer()

    clock = providers.Singleton(SystemClock)
    # This process, as sessions name the one that read their user (and whose clock timed it)
    process = providers.Object(THIS_PROCESS)
    ids = providers.Singleton(UuidGenerator)
    unit_of_work = providers.Factory(PostgresUnitOfWork, pool=gateways.postgres)
    cache = providers.Singleton(RedisCache, client=gateways.redis, lean=gateways.redis_lean)
    # The stream request after a start finds its session here without a Redis round trip.
    chat_sessions = providers.Singleton(
        RedisChatSessionStore,
        client=gateways.redis,
        local_copies_s=30.0,
        lean=gateways.redis_lean,
    )
    rate_limiter = providers.Singleton(
        RedisRateLimiter, client=gateways.redis, lean=gateways.redis_lean
    )
    # read beside each request's rate-limit count (same lean connection, same round trip)
    credential_versions = providers.Singleton(RedisCredentialVersions, lean=gateways.redis_lean)
    stream_passes = providers.Singleton(
        HmacStreamPasses, secret=providers.Callable(_jwt_secret, settings)
    )
    password_reset_tokens = providers.Singleton(
        HmacPasswordResetTokens, secret=providers.Callable(_jwt_secret, settings)
    )
    email_verification_tokens = providers.Singleton(
        HmacEmailVerificationTokens, secret=providers.Callable(_jwt_secret, settings)
    )
    blob_storage = providers.Singleton(
        S3BlobStorage,
        client=gateways.minio,
        bucket=providers.Callable(lambda s: s.s3_bucket, settings),
        signer=gateways.minio_public,
    )
    job_queue = providers.Singleton(
        DramatiqJobQueue,
        broker=gateways.broker,
        queue_name=providers.Callable(lambda s: s.queue_name, settings),
        client=gateways.redis,
        lean=gateways.redis_lean,
    )
    password_hasher = providers.Singleton(
        Argon2PasswordHasher,
        memory_kib=providers.Callable(lambda s: s.password_hash_memory_kib, settings),
        time_cost=providers.Callable(lambda s: s.password_hash_time_cost, settings),
    )
    # Common passwords always; breached ones too when WHALLI_PWNED_PASSWORDS_URL is set (only
    # then is the shared HTTP client opened for it).
    common_passwords = providers.Singleton(CommonPasswordList)
    password_screen = providers.Selector(
        providers.Callable(lambda s: "pwned" if s.pwned_passwords_url else "offline", settings),
        offline=common_passwords,
        pwned=providers.Singleton(
            PasswordScreenChain,
            providers.List(
                common_passwords,
                providers.Singleton(
                    PwnedPasswordsScreen,
                    gateways.http,
                    base_url=providers.Callable(lambda s: s.pwned_passwords_url, settings),
                    timeout_s=providers.Callable(lambda s: s.pwned_passwords_timeout_s, settings),
                ),
            ),
        ),
    )
    token_issuer = providers.Singleton(
        JwtAccessTokenIssuer,
        secret=providers.Callable(_jwt_secret, settings),
        issuer=providers.Callable(lambda s: s.jwt_issuer, settings),
        audience=providers.Callable(lambda s: s.jwt_audience, settings),
        clock=clock,
        ttl=providers.Callable(lambda s: timedelta(seconds=s.access_token_ttl_s), settings),
    )
    catalog = providers.Singleton(load_catalog, providers.Callable(_catalog_path, settings))
    oauth_providers = providers.Singleton(build_oauth_providers, settings, gateways.http)
    chat_models = providers.Singleton(build_chat_models, settings, gateways.provider_http)
    transcriber = providers.Singleton(build_transcriber, settings, gateways.provider_http)
    transcription_model = providers.Singleton(configured_transcription_model, settings, catalog)
    transcription_metrics = providers.Singleton(PrometheusTranscriptionMetrics)
    web_search = providers.Singleton(build_web_search, settings, gateways.provider_http)
    email_sender = providers.Singleton(build_email_sender, settings)
    # a resource: a bad WHALLI_CHAT_TITLES stops the API and the worker at start-up
    chat_titles = providers.Resource(chat_title_policy, settings, catalog.provider)
    # Readers elsewhere ask whether a silent reply is still generated after a heartbeat of
    # silence: the liveness marks last at least that long (3 s at least, beats every 1 s at
    # least, so that a short test heartbeat never outruns a busy process's beats).
    reply_stream = providers.Singleton(
        RelayedReplyStream,
        providers.Singleton(RedisReplyStream, gateways.redis, lean=gateways.redis_lean),
        beat_every_s=providers.Callable(lambda s: max(s.chat_heartbeat_s / 3, 1.0), settings),
        alive_for_s=providers.Callable(lambda s: max(s.chat_heartbeat_s, 3.0), settings),
    )
    chat_metrics = providers.Singleton(PrometheusChatMetrics)
    chat_search = providers.Singleton(PostgresChatSearch, gateways.postgres)
    text_extractor = providers.Singleton(
        PdfOcrTextExtractor,
        languages=providers.Callable(lambda s: s.ocr_languages, settings),
        max_chars=providers.Callable(lambda s: s.extraction_max_chars, settings),
        wall_time_s=providers.Callable(lambda s: s.extraction_wall_time_s, settings),
        memory_bytes=providers.Callable(lambda s: s.extraction_memory_mb * 1024 * 1024, settings),
    )
    health_probes = providers.List(
        providers.Singleton(PostgresHealthProbe, pool=gateways.postgres),
        providers.Singleton(RedisHealthProbe, client=gateways.redis),
        providers.Singleton(
            S3HealthProbe,
            client=gateways.minio,
            bucket=providers.Callable(lambda s: s.s3_bucket, settings),
        ),
    )


class Services(containers.DeclarativeContainer):
    """Use cases, each built per call with fresh ports (a new unit of work every time)."""

    settings = providers.Dependency(instance_of=Settings)
    adapters = providers.DependenciesContainer()
    uow = adapters.unit_of_work
    clock = adapters.clock
    ids = adapters.ids
    refresh_ttl = providers.Callable(lambda s: timedelta(days=s.refresh_token_ttl_days), settings)

    check_readiness = providers.Factory(CheckReadiness, probes=adapters.health_probes)
    record_ping = providers.Factory(RecordPing, cache=adapters.cache)
    request_limits = providers.Singleton(
        RequestLimits, adapters.rate_limiter, providers.Callable(rate_limit_policy, settings)
    )

    # identity
    # who recent API keys belong to: charges their rate budget while the key is checked
    key_owners = providers.Singleton(KeyOwners)
    # users this process ended a credential of just now (``AttachStreamHandler``'s fast path)
    credential_ends = providers.Singleton(CredentialEnds)
    # what this process read of recent credentials, trusted while their user's version holds
    principal_cache = providers.Singleton(
        principal_cache_for, providers.Callable(lambda s: s.credential_cache_s, settings)
    )
    # tells every process of a change to an account, and this one of a credential's end
    access_changes = providers.Singleton(
        AccessChanges, versions=adapters.credential_versions, principals=principal_cache,
        ends=credential_ends, clock=clock,
    )  # fmt: skip
    authenticate = providers.Factory(
        AuthenticateHandler, uow, issuer=adapters.token_issuer, clock=clock,
        last_used_interval=providers.Callable(
            lambda s: timedelta(seconds=s.api_key_last_used_interval_s), settings
        ),
        key_owners=key_owners, principals=principal_cache, versions=adapters.credential_versions,
    )  # fmt: skip
    register = providers.Factory(
        RegisterHandler,
        uow,
        hasher=adapters.password_hasher,
        screen=adapters.password_screen,
        issuer=adapters.token_issuer,
        clock=clock,
        ids=ids,
        refresh_ttl=refresh_ttl,
    )
    login = providers.Factory(
        LoginHandler,
        uow,
        hasher=adapters.password_hasher,
        issuer=adapters.token_issuer,
        clock=clock,
        ids=ids,
        refresh_ttl=refresh_ttl,
        access=access_changes,
    )
    refresh_session = providers.Factory(
        RefreshSessionHandler, uow, issuer=adapters.token_issuer, clock=clock, ids=ids,
        reuse_grace=providers.Callable(
            lambda s: timedelta(seconds=s.refresh_token_reuse_grace_s), settings
        ),
        access=access_changes,
    )  # fmt: skip
    logout = providers.Factory(LogoutHandler, uow, clock=clock, access=access_changes)
    logout_all = providers.Factory(LogoutAllHandler, uow, clock=clock, access=access_changes)
    change_password = providers.Factory(
        ChangePasswordHandler,
        uow,
        hasher=adapters.password_hasher,
        screen=adapters.password_screen,
        issuer=adapters.token_issuer,
        clock=clock,
        ids=ids,
        refresh_ttl=refresh_ttl,
        access=access_changes,
    )
    reset_ttl = providers.Callable(lambda s: timedelta(seconds=s.password_reset_ttl_s), settings)
    request_password_reset = providers.Factory(
        RequestPasswordResetHandler, adapters.job_queue, clock,
        enabled=providers.Callable(lambda s: s.sends_email, settings),
    )  # fmt: skip
    send_password_reset = providers.Factory(
        SendPasswordResetHandler, uow, adapters.password_reset_tokens, adapters.email_sender,
        clock, web_url=providers.Callable(lambda s: s.web_url, settings), ttl=reset_ttl,
    )  # fmt: skip
    reset_password = providers.Factory(
        ResetPasswordHandler,
        uow,
        adapters.password_reset_tokens,
        hasher=adapters.password_hasher,
        screen=adapters.password_screen,
        issuer=adapters.token_issuer,
        clock=clock,
        ids=ids,
        refresh_ttl=refresh_ttl,
        access=access_changes,
    )
    verification_ttl = providers.Callable(
        lambda s: timedelta(seconds=s.email_verification_ttl_s), settings
    )
    request_email_verification = providers.Factory(
        RequestEmailVerificationHandler, uow, adapters.job_queue, clock,
        enabled=providers.Callable(lambda s: s.sends_email, settings),
    )  # fmt: skip
    send_email_verification = providers.Factory(
        SendEmailVerificationHandler, uow, adapters.email_verification_tokens,
        adapters.email_sender, clock, web_url=providers.Callable(lambda s: s.web_url, settings),
        ttl=verification_ttl,
    )  # fmt: skip
    verify_email = providers.Factory(
        VerifyEmailHandler, uow, adapters.email_verification_tokens, clock, access_changes
    )
    delete_account = providers.Factory(
        DeleteAccountHandler, uow, adapters.blob_storage, hasher=adapters.password_hasher,
        stopper=providers.Factory(ReplyStopper, adapters.chat_sessions, adapters.reply_stream),
        clock=clock, access=access_changes,
    )  # fmt: skip
    update_profile = providers.Factory(UpdateProfileHandler, uow, clock, access=access_changes)
    get_profile = providers.Factory(GetProfileHandler, uow)
    create_user = providers.Factory(
        CreateUserHandler,
        uow,
        hasher=adapters.password_hasher,
        screen=adapters.password_screen,
        clock=clock,
        ids=ids,
    )

    start_oauth = providers.Factory(StartOAuth, adapters.cache, ids)
    oauth_links = providers.Factory(OAuthLinks, uow)
    complete_oauth = providers.Factory(
        CompleteOAuth,
        uow,
        adapters.cache,
        issuer=adapters.token_issuer,
        clock=clock,
        ids=ids,
        refresh_ttl=refresh_ttl,
        access=access_changes,
    )

    # chat
    start_chat = providers.Factory(
        StartChatHandler,
        uow,
        adapters.chat_sessions,
        adapters.catalog,
        providers.Callable(lambda s: s.enabled_providers, settings),
        clock=clock,
        ids=ids,
        ttl=providers.Callable(lambda s: timedelta(seconds=s.chat_session_ttl_s), settings),
        attachment_wait_s=providers.Callable(lambda s: s.chat_attachment_wait_s, settings),
        blobs=adapters.blob_storage,
        process=adapters.process,
    )
    regenerate_reply = providers.Factory(
        RegenerateReplyHandler,
        uow,
        adapters.chat_sessions,
        adapters.catalog,
        providers.Callable(lambda s: s.enabled_providers, settings),
        clock=clock,
        ids=ids,
        ttl=providers.Callable(lambda s: timedelta(seconds=s.chat_session_ttl_s), settings),
        blobs=adapters.blob_storage,
        process=adapters.process,
    )
    # one stop poller for every reply this process generates
    stop_board = providers.Singleton(
        StopBoard,
        adapters.reply_stream,
        abandon_after_s=providers.Callable(abandon_after, settings),
    )
    generate_reply = providers.Factory(
        GenerateReplyHandler,
        uow,
        adapters.reply_stream,
        adapters.cache,
        adapters.catalog,
        adapters.chat_models,
        clock=clock,
        ids=ids,
        metrics=adapters.chat_metrics,
        stops=stop_board,
        settings=providers.Callable(reply_settings, settings),
        jobs=adapters.job_queue,
        titles=adapters.chat_titles,
        sessions=adapters.chat_sessions,
    )
    title_chat = providers.Factory(
        TitleChatHandler,
        uow,
        adapters.catalog,
        adapters.chat_models,
        titles=adapters.chat_titles,
        clock=clock,
        ids=ids,
        metrics=adapters.chat_metrics,
    )
    complete_chat = providers.Factory(
        CompleteChatHandler,
        uow,
        adapters.cache,
        adapters.catalog,
        adapters.chat_models,
        providers.Callable(lambda s: s.enabled_providers, settings),
        clock=clock,
        ids=ids,
        metrics=adapters.chat_metrics,
        cache_ttl=providers.Callable(lambda s: timedelta(seconds=s.chat_cache_ttl_s), settings),
        cache_shared=providers.Callable(lambda s: s.chat_cache_shared, settings),
        watch=providers.Factory(CredentialWatch, uow, clock, versions=adapters.credential_versions),
    )
    list_chats = providers.Factory(ListChatsHandler, uow)
    get_chat = providers.Factory(
        GetChatHandler, uow, adapters.chat_sessions, adapters.stream_passes, clock
    )
    update_chat = providers.Factory(UpdateChatHandler, uow, clock)
    rate_reply = providers.Factory(RateReplyHandler, uow, clock, adapters.chat_metrics)
    list_reply_versions = providers.Factory(ListReplyVersionsHandler, uow)
    restore_reply_version = providers.Factory(RestoreReplyVersionHandler, uow, clock)
    share_chat = providers.Factory(ShareChatHandler, uow, clock, ids)
    list_chat_shares = providers.Factory(ListChatSharesHandler, uow, clock)
    revoke_chat_share = providers.Factory(RevokeChatShareHandler, uow, clock)
    read_shared_chat = providers.Factory(ReadSharedChatHandler, uow, clock)
    reply_stopper = providers.Factory(ReplyStopper, adapters.chat_sessions, adapters.reply_stream)
    delete_chat = providers.Factory(DeleteChatHandler, uow, reply_stopper)
    search_chats = providers.Factory(SearchChatsHandler, adapters.chat_search)
    import_chats = providers.Factory(ImportChatsHandler, uow, clock, ids)
    fork_chat = providers.Factory(ForkChatHandler, uow, clock, ids)

    # presets
    create_preset = providers.Factory(
        CreatePresetHandler,
        uow,
        adapters.catalog,
        providers.Callable(lambda s: s.enabled_providers, settings),
        clock,
        ids,
    )
    list_presets = providers.Factory(ListPresetsHandler, uow)
    update_preset = providers.Factory(
        UpdatePresetHandler,
        uow,
        adapters.catalog,
        providers.Callable(lambda s: s.enabled_providers, settings),
        clock,
    )
    delete_preset = providers.Factory(DeletePresetHandler, uow)

    # recurring web searches and notifications
    create_search = providers.Factory(
        CreateSearchHandler, uow, clock, ids,
        enabled=providers.Callable(lambda s: bool(s.search_provider), settings),
    )  # fmt: skip
    list_searches = providers.Factory(ListSearchesHandler, uow)
    get_search = providers.Factory(GetSearchHandler, uow)
    update_search = providers.Factory(UpdateSearchHandler, uow, clock)
    delete_search = providers.Factory(DeleteSearchHandler, uow)
    list_search_results = providers.Factory(ListSearchResultsHandler, uow)
    run_search = providers.Factory(
        RunSearchHandler, uow, adapters.web_search, clock, ids, email=adapters.email_sender,
        root_path=providers.Callable(lambda s: s.root_path, settings),
    )  # fmt: skip
    record_abandoned_run = providers.Factory(RecordAbandonedRunHandler, uow, clock)
    schedule_due_searches = providers.Factory(ScheduleDueSearches, uow, adapters.job_queue, clock)
    list_notifications = providers.Factory(ListNotificationsHandler, uow)
    count_unread_notifications = providers.Factory(CountUnreadNotificationsHandler, uow)
    mark_notification_read = providers.Factory(MarkNotificationReadHandler, uow, clock)
    mark_all_notifications_read = providers.Factory(MarkAllNotificationsReadHandler, uow, clock)
    attach_stream = providers.Factory(
        AttachStreamHandler, adapters.chat_sessions, uow, adapters.stream_passes, clock,
        process=adapters.process, ends=credential_ends,
    )  # fmt: skip
    read_reply = providers.Factory(
        ReadReplyHandler,
        adapters.reply_stream,
        providers.Callable(lambda s: s.chat_heartbeat_s, settings),
        track_readers=providers.Callable(lambda s: s.chat_cancel_abandoned_after_s > 0, settings),
    )
    stop_generation = providers.Factory(
        StopGenerationHandler,
        adapters.chat_sessions,
        adapters.reply_stream,
        uow,
        adapters.stream_passes,
        clock,
    )

    # files: background extraction and its sweeper
    extract_attachment = providers.Factory(
        ExtractAttachmentHandler,
        uow,
        adapters.blob_storage,
        adapters.text_extractor,
        clock,
        temp_dir=providers.Callable(lambda s: s.extraction_temp_dir or None, settings),
        max_chars=providers.Callable(lambda s: s.extraction_max_chars, settings),
        transcriber=adapters.transcriber,
        ids=ids,
        transcription_max_bytes=providers.Callable(lambda s: s.transcription_max_bytes, settings),
        transcription_model=adapters.transcription_model,
        transcription_metrics=adapters.transcription_metrics,
    )
    requeue_stale_attachments = providers.Factory(
        RequeueStaleAttachments,
        uow,
        adapters.job_queue,
        clock,
        older_than=providers.Callable(
            lambda s: timedelta(seconds=s.extraction_stale_after_s), settings
        ),
        processing_older_than=providers.Callable(
            lambda s: timedelta(seconds=s.processing_stale_after_s), settings
        ),
    )
    # chats: the sweeper of replies whose generator died with its API process
    fail_abandoned_replies = providers.Factory(
        FailAbandonedReplies,
        uow,
        clock,
        older_than=providers.Callable(
            lambda s: timedelta(seconds=s.reply_abandoned_after_s), settings
        ),
    )

    # files (uploads and access; the extraction job has its own handler)
    upload_attachment = providers.Factory(
        UploadAttachmentHandler,
        uow,
        adapters.blob_storage,
        adapters.job_queue,
        clock,
        ids,
        max_bytes=providers.Callable(lambda s: s.max_upload_bytes, settings),
        accepts_audio=providers.Callable(lambda s: s.transcription_endpoint is not None, settings),
        transcription_model=adapters.transcription_model,
        metrics=adapters.transcription_metrics,
    )
    transcribe_speech = providers.Factory(
        TranscribeSpeechHandler,
        adapters.transcriber,
        model=adapters.transcription_model,
        max_bytes=providers.Callable(lambda s: s.transcription_max_bytes, settings),
        uow=uow,
        clock=clock,
        ids=ids,
        metrics=adapters.transcription_metrics,
    )
    list_attachments = providers.Factory(ListAttachmentsHandler, uow)
    get_attachment = providers.Factory(GetAttachmentHandler, uow)
    watch_attachment = providers.Factory(
        WatchAttachmentHandler,
        get_attachment,
        poll_s=providers.Callable(lambda s: s.file_events_poll_s, settings),
        heartbeat_s=providers.Callable(lambda s: s.chat_heartbeat_s, settings),
        max_lifetime_s=providers.Callable(lambda s: s.file_events_max_lifetime_s, settings),
    )
    open_attachment_content = providers.Factory(
        OpenAttachmentContentHandler, uow, adapters.blob_storage
    )
    delete_attachment = providers.Factory(DeleteAttachmentHandler, uow, adapters.blob_storage)

    # projects and members
    create_project = providers.Factory(CreateProjectHandler, uow, clock, ids)
    list_projects = providers.Factory(ListProjectsHandler, uow)
    get_project = providers.Factory(GetProjectHandler, uow)
    rename_project = providers.Factory(RenameProjectHandler, uow, clock)
    delete_project = providers.Factory(
        DeleteProjectHandler, uow, adapters.blob_storage, reply_stopper
    )
    list_members = providers.Factory(ListMemberProfilesHandler, uow)
    add_member = providers.Factory(AddMemberHandler, uow, clock)
    change_member_role = providers.Factory(ChangeMemberRoleHandler, uow)
    remove_member = providers.Factory(RemoveMemberHandler, uow, clock)

    # models, admin, API keys
    list_models = providers.Factory(
        ListModelsHandler,
        adapters.catalog,
        providers.Callable(lambda s: s.enabled_providers, settings),
    )
    list_users = providers.Factory(ListUsersHandler, uow)
    summarize_usage = providers.Factory(SummarizeUsageHandler, uow, clock)
    summarize_feedback = providers.Factory(SummarizeFeedbackHandler, uow, clock)
    update_user = providers.Factory(
        UpdateUserHandler, uow, clock, access=access_changes, stopper=reply_stopper
    )
    create_api_key = providers.Factory(CreateApiKeyHandler, uow, clock, ids)
    list_api_keys = providers.Factory(ListApiKeysHandler, uow)
    revoke_api_key = providers.Factory(RevokeApiKeyHandler, uow, clock, access=access_changes)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    gateways = providers.Container(Gateways, settings=settings)
    adapters = providers.Container(Adapters, settings=settings, gateways=gateways)
    services = providers.Container(Services, settings=settings, adapters=adapters)


def build_container(settings: Settings) -> Container:
    container = Container(settings=settings)
    return container


def job_handlers(container: Container) -> dict[type, Any]:
    """Which use case handles which job type (the worker's dispatch table)."""

    async def ping(job: Ping) -> None:
        # Use cases that depend on async resources are resolved with await.
        service: RecordPing = await container.services.record_ping()
        await service.execute(job)

    async def extract_attachment(job: ExtractAttachment) -> None:
        service: ExtractAttachmentHandler = await container.services.extract_attachment()
        await service.execute(job)

    async def title_chat(job: TitleChat) -> None:
        service: TitleChatHandler = await container.services.title_chat()
        await service.execute(job)

    async def run_search(job: RunSearchSubscription) -> None:
        service: RunSearchHandler = await container.services.run_search()
        await service.execute(job)

    async def send_password_reset(job: SendPasswordReset) -> None:
        service: SendPasswordResetHandler = await container.services.send_password_reset()
        await service.execute(job)

    async def send_email_verification(job: SendEmailVerification) -> None:
        service: SendEmailVerificationHandler = await container.services.send_email_verification()
        await service.execute(job)

    return {
        Ping: ping,
        ExtractAttachment: extract_attachment,
        TitleChat: title_chat,
        RunSearchSubscription: run_search,
        SendPasswordReset: send_password_reset,
        SendEmailVerification: send_email_verification,
    }


def abandoned_job_handlers(container: Container) -> dict[type, Any]:
    """Which use case is told when the queue gave up on a job of a type for good (the rest:
    nobody; a failed extraction or transcription is its sweeper's)."""

    async def run_search(abandoned: JobAbandoned) -> None:
        job = abandoned.job
        assert isinstance(job, RunSearchSubscription)
        service: RecordAbandonedRunHandler = await container.services.record_abandoned_run()
        await service.execute(
            RecordAbandonedRun(
                subscription_id=job.subscription_id, cause=abandoned.cause, since=abandoned.since
            )
        )

    return {RunSearchSubscription: run_search}
