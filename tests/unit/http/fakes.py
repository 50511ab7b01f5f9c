"""A fake composition root and fake health probes for HTTP tests."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.adapters.crypto.email_verifications import HmacEmailVerificationTokens
from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.crypto.password_resets import HmacPasswordResetTokens
from whalli.adapters.crypto.stream_passes import HmacStreamPasses
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.chat_metrics import InMemoryChatMetrics
from whalli.adapters.memory.chat_search import InMemoryChatSearch
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.email_sender import InMemoryEmailSender
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.oauth_provider import FakeOAuthProvider
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.adapters.memory.rate_limiter import InMemoryRateLimiter
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.transcriber import InMemoryTranscriber
from whalli.adapters.memory.transcription_metrics import InMemoryTranscriptionMetrics
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.config import Settings
from whalli.domain.model.catalog import KNOWN_PROVIDERS
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import Job, SendEmailVerification, SendPasswordReset
from whalli.domain.model.oauth import OAuthProviderName
from whalli.domain.services.admin.list_users import ListUsersHandler
from whalli.domain.services.admin.summarize_feedback import SummarizeFeedbackHandler
from whalli.domain.services.admin.update_user import UpdateUserHandler
from whalli.domain.services.api_keys.create_api_key import CreateApiKeyHandler
from whalli.domain.services.api_keys.list_api_keys import ListApiKeysHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKeyHandler
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.authenticate import AuthenticateHandler
from whalli.domain.services.auth.change_password import ChangePasswordHandler
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.auth.delete_account import DeleteAccountHandler
from whalli.domain.services.auth.get_profile import GetProfileHandler
from whalli.domain.services.auth.login import LoginHandler
from whalli.domain.services.auth.logout import LogoutHandler
from whalli.domain.services.auth.logout_all import LogoutAllHandler
from whalli.domain.services.auth.oauth_callback import CompleteOAuth
from whalli.domain.services.auth.oauth_links import OAuthLinks
from whalli.domain.services.auth.oauth_start import StartOAuth
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
from whalli.domain.services.chat.read_reply import ReadReplyHandler
from whalli.domain.services.chat.stop_generation import StopGenerationHandler
from whalli.domain.services.chat.stop_replies import ReplyStopper
from whalli.domain.services.chats.delete_chat import DeleteChatHandler
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
from whalli.domain.services.chats.update_chat import UpdateChatHandler
from whalli.domain.services.check_readiness import CheckReadiness
from whalli.domain.services.files.delete_attachment import DeleteAttachmentHandler
from whalli.domain.services.files.get_attachment import GetAttachmentHandler
from whalli.domain.services.files.list_attachments import ListAttachmentsHandler
from whalli.domain.services.files.open_attachment_content import OpenAttachmentContentHandler
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
from whalli.domain.services.rate_limits import RequestLimits
from whalli.domain.services.searches.create_search import CreateSearchHandler
from whalli.domain.services.searches.delete_search import DeleteSearchHandler
from whalli.domain.services.searches.get_search import GetSearchHandler
from whalli.domain.services.searches.list_search_results import ListSearchResultsHandler
from whalli.domain.services.searches.list_searches import ListSearchesHandler
from whalli.domain.services.searches.update_search import UpdateSearchHandler
from whalli.domain.services.transcriptions.transcribe_speech import TranscribeSpeechHandler
from whalli.domain.services.usage.summarize_usage import SummarizeUsageHandler
from whalli.entrypoints.http.draining import ShutdownDrain
from whalli.entrypoints.http.rate_limit import rate_limit_policy
from whalli.ports.chat_model import ChatModel
from whalli.ports.health import HealthProbe
from whalli.ports.oauth_provider import OAuthProvider
from whalli.ports.rate_limiter import RateLimiter

ProbeState = Literal["ok", "down", "hanging"]
# 64 bytes, so a test can sign a forgery with HS512 under it without a key-length warning.
TEST_JWT_SECRET = "a-test-only-jwt-secret-" + "x" * 41


class FakeProbe(HealthProbe):
    def __init__(self, name: str, state: ProbeState = "ok") -> None:
        self.name = name
        self.state: ProbeState = state

    async def check(self) -> None:
        if self.state == "down":
            raise ServiceUnavailable("connection refused")
        if self.state == "hanging":
            await asyncio.Event().wait()


class FakeContainer:
    def __init__(
        self,
        settings: Settings,
        probes: list[FakeProbe],
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self.probes = probes
        self.events: list[str] = []
        # The in-memory adapters behind the use cases; tests read and seed the store directly.
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()
        self.catalog = load_catalog(default_catalog_path())
        self.enabled_providers = set(KNOWN_PROVIDERS)
        # Accounts and sessions: a fast hasher and real JWTs on the manual clock.
        self.hasher = FastPasswordHasher()
        self.password_screen = CommonPasswordList()  # offline, the real list
        self.issuer = JwtAccessTokenIssuer(
            secret=settings.jwt_secret.reveal() if settings.jwt_secret else TEST_JWT_SECRET,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            clock=self.clock,
            ttl=timedelta(seconds=settings.access_token_ttl_s),
        )
        self.refresh_ttl = timedelta(days=settings.refresh_token_ttl_days)
        # OAuth sign-in: in-process providers (delete one to disable it) and an in-memory cache.
        self.cache = InMemoryCache(self.clock)
        # Chat sessions (tests seed them to see a reply's sessionId on GET /api/chats/{id}).
        self.chat_sessions = InMemoryChatSessionStore(self.clock)
        self.stream_passes = HmacStreamPasses(TEST_JWT_SECRET)
        # Password resets: links mailed to an outbox (None: this server sends no email).
        self.reset_tokens = HmacPasswordResetTokens(TEST_JWT_SECRET)
        self.verification_tokens = HmacEmailVerificationTokens(TEST_JWT_SECRET)
        self.email: InMemoryEmailSender | None = InMemoryEmailSender()
        self.credential_ends = CredentialEnds()
        # One process: no credential versions nor principal cache, but ends noted for attaches.
        self.access_changes = AccessChanges(ends=self.credential_ends, clock=self.clock)
        # Chat replies as the stream and stop routes read them.
        self.reply_stream = InMemoryReplyStream(self.clock)
        # Request limits: in memory on the manual clock unless a test passes a real limiter.
        self.rate_limiter = rate_limiter or InMemoryRateLimiter(self.clock)
        self.oauth_providers: dict[str, FakeOAuthProvider] = {
            name.value: FakeOAuthProvider(name) for name in OAuthProviderName
        }
        # Chat models by provider (the network-free echo model) and the metrics they report.
        self.models: dict[str, ChatModel] = {"dev": DevEchoChatModel()}
        self.chat_metrics = InMemoryChatMetrics()
        # Files: bytes in memory, extraction jobs recorded.
        self.blobs = InMemoryBlobStorage()
        self.jobs = InMemoryJobQueue()
        # Speech to text (/v1/audio): texts by content (None: transcription not configured).
        self.transcriber: InMemoryTranscriber | None = InMemoryTranscriber()
        self.transcription_metrics = InMemoryTranscriptionMetrics()
        # Recurring searches: on (as if a provider were configured) unless a test turns it off.
        self.searches_enabled = True
        # Readiness while the process drains before shutdown (tests begin it by hand).
        self.drain = ShutdownDrain()

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    @property
    def settings(self) -> Settings:
        return self._settings

    async def check_readiness(self) -> CheckReadiness:
        return CheckReadiness(list(self.probes), timeout=0.05)

    # --- accounts and sessions ---------------------------------------------------------------
    async def authenticate(self) -> AuthenticateHandler:
        return AuthenticateHandler(self.uow(), issuer=self.issuer, clock=self.clock)

    async def register(self) -> RegisterHandler:
        return RegisterHandler(
            self.uow(), hasher=self.hasher, screen=self.password_screen, issuer=self.issuer,
            clock=self.clock, ids=self.ids, refresh_ttl=self.refresh_ttl,
        )  # fmt: skip

    async def login(self) -> LoginHandler:
        return LoginHandler(
            self.uow(), hasher=self.hasher, issuer=self.issuer, clock=self.clock, ids=self.ids,
            refresh_ttl=self.refresh_ttl,
        )  # fmt: skip

    async def refresh_session(self) -> RefreshSessionHandler:
        return RefreshSessionHandler(
            self.uow(), issuer=self.issuer, clock=self.clock, ids=self.ids,
            access=self.access_changes,
        )  # fmt: skip

    async def logout(self) -> LogoutHandler:
        return LogoutHandler(self.uow(), clock=self.clock, access=self.access_changes)

    async def logout_all(self) -> LogoutAllHandler:
        return LogoutAllHandler(self.uow(), clock=self.clock, access=self.access_changes)

    async def change_password(self) -> ChangePasswordHandler:
        return ChangePasswordHandler(
            self.uow(), hasher=self.hasher, screen=self.password_screen, issuer=self.issuer,
            clock=self.clock, ids=self.ids, refresh_ttl=self.refresh_ttl,
            access=self.access_changes,
        )  # fmt: skip

    async def request_password_reset(self) -> RequestPasswordResetHandler:
        return RequestPasswordResetHandler(self.jobs, self.clock, enabled=self.email is not None)

    async def reset_password(self) -> ResetPasswordHandler:
        return ResetPasswordHandler(
            self.uow(), self.reset_tokens, hasher=self.hasher, screen=self.password_screen,
            issuer=self.issuer, clock=self.clock, ids=self.ids, refresh_ttl=self.refresh_ttl,
            access=self.access_changes,
        )  # fmt: skip

    async def request_email_verification(self) -> RequestEmailVerificationHandler:
        return RequestEmailVerificationHandler(
            self.uow(), self.jobs, self.clock, enabled=self.email is not None
        )

    async def verify_email(self) -> VerifyEmailHandler:
        return VerifyEmailHandler(
            self.uow(), self.verification_tokens, self.clock, self.access_changes
        )

    async def send_queued(self, job: Job) -> None:
        """The worker's side of the jobs these routes queue (not the app's): what a queued
        ``SendPasswordReset`` or ``SendEmailVerification`` does."""
        if isinstance(job, SendPasswordReset):
            await self.send_password_reset().execute(job)
        elif isinstance(job, SendEmailVerification):
            await SendEmailVerificationHandler(
                self.uow(), self.verification_tokens, self.email, self.clock,
                web_url=self._settings.web_url,
                ttl=timedelta(seconds=self._settings.email_verification_ttl_s),
            ).execute(job)  # fmt: skip
        else:
            raise AssertionError(f"no worker here for {job!r}")

    def send_password_reset(self) -> SendPasswordResetHandler:
        """The worker's side (not the app's): what a queued ``SendPasswordReset`` does."""
        return SendPasswordResetHandler(
            self.uow(), self.reset_tokens, self.email, self.clock,
            web_url=self._settings.web_url,
            ttl=timedelta(seconds=self._settings.password_reset_ttl_s),
        )  # fmt: skip

    async def delete_account(self) -> DeleteAccountHandler:
        return DeleteAccountHandler(
            self.uow(), self.blobs, hasher=self.hasher,
            stopper=ReplyStopper(self.chat_sessions, self.reply_stream),
            clock=self.clock, access=self.access_changes,
        )  # fmt: skip

    async def update_profile(self) -> UpdateProfileHandler:
        return UpdateProfileHandler(self.uow(), self.clock)

    async def get_profile(self) -> GetProfileHandler:
        return GetProfileHandler(self.uow())

    # --- projects, members, models, admin, API keys ---------------------------------------------
    async def create_project(self) -> CreateProjectHandler:
        return CreateProjectHandler(self.uow(), self.clock, self.ids)

    async def list_projects(self) -> ListProjectsHandler:
        return ListProjectsHandler(self.uow())

    async def get_project(self) -> GetProjectHandler:
        return GetProjectHandler(self.uow())

    async def rename_project(self) -> RenameProjectHandler:
        return RenameProjectHandler(self.uow(), self.clock)

    async def delete_project(self) -> DeleteProjectHandler:
        return DeleteProjectHandler(
            self.uow(), self.blobs, ReplyStopper(self.chat_sessions, self.reply_stream)
        )

    async def list_members(self) -> ListMemberProfilesHandler:
        return ListMemberProfilesHandler(self.uow())

    async def add_member(self) -> AddMemberHandler:
        return AddMemberHandler(self.uow(), self.clock)

    async def change_member_role(self) -> ChangeMemberRoleHandler:
        return ChangeMemberRoleHandler(self.uow())

    async def remove_member(self) -> RemoveMemberHandler:
        return RemoveMemberHandler(self.uow(), self.clock)

    async def list_models(self) -> ListModelsHandler:
        return ListModelsHandler(self.catalog, self.enabled_providers)

    async def list_users(self) -> ListUsersHandler:
        return ListUsersHandler(self.uow())

    async def summarize_usage(self) -> SummarizeUsageHandler:
        return SummarizeUsageHandler(self.uow(), self.clock)

    async def summarize_feedback(self) -> SummarizeFeedbackHandler:
        return SummarizeFeedbackHandler(self.uow(), self.clock)

    async def update_user(self) -> UpdateUserHandler:
        return UpdateUserHandler(self.uow(), self.clock, access=self.access_changes)

    async def create_api_key(self) -> CreateApiKeyHandler:
        return CreateApiKeyHandler(self.uow(), self.clock, self.ids)

    async def list_api_keys(self) -> ListApiKeysHandler:
        return ListApiKeysHandler(self.uow())

    async def revoke_api_key(self) -> RevokeApiKeyHandler:
        return RevokeApiKeyHandler(self.uow(), self.clock, access=self.access_changes)

    # --- existing chats -------------------------------------------------------------------------
    async def list_chats(self) -> ListChatsHandler:
        return ListChatsHandler(self.uow())

    async def get_chat(self) -> GetChatHandler:
        return GetChatHandler(self.uow(), self.chat_sessions, self.stream_passes, self.clock)

    async def attach_stream(self) -> AttachStreamHandler:
        return AttachStreamHandler(
            self.chat_sessions, self.uow(), self.stream_passes, self.clock,
            ends=self.credential_ends,
        )  # fmt: skip

    async def read_reply(self) -> ReadReplyHandler:
        return ReadReplyHandler(self.reply_stream, 0.05)

    async def stop_generation(self) -> StopGenerationHandler:
        return StopGenerationHandler(
            self.chat_sessions, self.reply_stream, self.uow(), self.stream_passes, self.clock
        )

    async def update_chat(self) -> UpdateChatHandler:
        return UpdateChatHandler(self.uow(), self.clock)

    async def rate_reply(self) -> RateReplyHandler:
        return RateReplyHandler(self.uow(), self.clock, self.chat_metrics)

    async def list_reply_versions(self) -> ListReplyVersionsHandler:
        return ListReplyVersionsHandler(self.uow())

    async def restore_reply_version(self) -> RestoreReplyVersionHandler:
        return RestoreReplyVersionHandler(self.uow(), self.clock)

    async def share_chat(self) -> ShareChatHandler:
        return ShareChatHandler(self.uow(), self.clock, self.ids)

    async def list_chat_shares(self) -> ListChatSharesHandler:
        return ListChatSharesHandler(self.uow(), self.clock)

    async def revoke_chat_share(self) -> RevokeChatShareHandler:
        return RevokeChatShareHandler(self.uow(), self.clock)

    async def read_shared_chat(self) -> ReadSharedChatHandler:
        return ReadSharedChatHandler(self.uow(), self.clock)

    async def delete_chat(self) -> DeleteChatHandler:
        return DeleteChatHandler(self.uow(), ReplyStopper(self.chat_sessions, self.reply_stream))

    async def search_chats(self) -> SearchChatsHandler:
        return SearchChatsHandler(InMemoryChatSearch(self.store))

    async def import_chats(self) -> ImportChatsHandler:
        return ImportChatsHandler(self.uow(), self.clock, self.ids)

    async def fork_chat(self) -> ForkChatHandler:
        return ForkChatHandler(self.uow(), self.clock, self.ids)

    async def create_preset(self) -> CreatePresetHandler:
        return CreatePresetHandler(
            self.uow(), self.catalog, self.enabled_providers, self.clock, self.ids
        )

    async def list_presets(self) -> ListPresetsHandler:
        return ListPresetsHandler(self.uow())

    async def update_preset(self) -> UpdatePresetHandler:
        return UpdatePresetHandler(self.uow(), self.catalog, self.enabled_providers, self.clock)

    async def delete_preset(self) -> DeletePresetHandler:
        return DeletePresetHandler(self.uow())

    # --- recurring searches and notifications --------------------------------------------------
    async def create_search(self) -> CreateSearchHandler:
        return CreateSearchHandler(self.uow(), self.clock, self.ids, enabled=self.searches_enabled)

    async def list_searches(self) -> ListSearchesHandler:
        return ListSearchesHandler(self.uow())

    async def get_search(self) -> GetSearchHandler:
        return GetSearchHandler(self.uow())

    async def update_search(self) -> UpdateSearchHandler:
        return UpdateSearchHandler(self.uow(), self.clock)

    async def delete_search(self) -> DeleteSearchHandler:
        return DeleteSearchHandler(self.uow())

    async def list_search_results(self) -> ListSearchResultsHandler:
        return ListSearchResultsHandler(self.uow())

    async def list_notifications(self) -> ListNotificationsHandler:
        return ListNotificationsHandler(self.uow())

    async def count_unread_notifications(self) -> CountUnreadNotificationsHandler:
        return CountUnreadNotificationsHandler(self.uow())

    async def mark_notification_read(self) -> MarkNotificationReadHandler:
        return MarkNotificationReadHandler(self.uow(), self.clock)

    async def mark_all_notifications_read(self) -> MarkAllNotificationsReadHandler:
        return MarkAllNotificationsReadHandler(self.uow(), self.clock)

    # --- files ---------------------------------------------------------------------------------
    async def upload_attachment(self) -> UploadAttachmentHandler:
        return UploadAttachmentHandler(
            self.uow(), self.blobs, self.jobs, self.clock, self.ids,
            max_bytes=self._settings.max_upload_bytes, accepts_audio=self.transcriber is not None,
            transcription_model=self.catalog.transcription_model(
                self._settings.transcription_model
            ),
            metrics=self.transcription_metrics,
        )  # fmt: skip

    async def list_attachments(self) -> ListAttachmentsHandler:
        return ListAttachmentsHandler(self.uow())

    async def get_attachment(self) -> GetAttachmentHandler:
        return GetAttachmentHandler(self.uow())

    async def open_attachment_content(self) -> OpenAttachmentContentHandler:
        return OpenAttachmentContentHandler(self.uow(), self.blobs)

    async def delete_attachment(self) -> DeleteAttachmentHandler:
        return DeleteAttachmentHandler(self.uow(), self.blobs)

    async def watch_attachment(self) -> WatchAttachmentHandler:
        return WatchAttachmentHandler(
            GetAttachmentHandler(self.uow()),
            poll_s=self._settings.file_events_poll_s,
            heartbeat_s=self._settings.chat_heartbeat_s,
            max_lifetime_s=self._settings.file_events_max_lifetime_s,
        )

    async def transcribe_speech(self) -> TranscribeSpeechHandler:
        s = self._settings
        return TranscribeSpeechHandler(
            self.transcriber, self.catalog.transcription_model(s.transcription_model),
            s.transcription_max_bytes, uow=self.uow(), clock=self.clock, ids=self.ids,
            metrics=self.transcription_metrics,
        )  # fmt: skip

    # --- the OpenAI-compatible API ----------------------------------------------------------------
    async def complete_chat(self) -> CompleteChatHandler:
        return CompleteChatHandler(
            self.uow(), self.cache, self.catalog, self.models, self.enabled_providers,
            clock=self.clock, ids=self.ids, metrics=self.chat_metrics,
        )  # fmt: skip

    # --- OAuth sign-in ------------------------------------------------------------------------
    async def start_oauth(self) -> StartOAuth:
        return StartOAuth(self.cache, self.ids)

    async def complete_oauth(self) -> CompleteOAuth:
        return CompleteOAuth(
            self.uow(), self.cache, issuer=self.issuer, clock=self.clock, ids=self.ids,
            refresh_ttl=self.refresh_ttl,
        )  # fmt: skip

    async def oauth_links(self) -> OAuthLinks:
        return OAuthLinks(self.uow())

    def oauth_provider(self, name: str) -> OAuthProvider | None:
        return self.oauth_providers.get(name)

    async def request_limits(self) -> RequestLimits:
        return RequestLimits(self.rate_limiter, rate_limit_policy(self._settings))

    async def init_resources(self) -> None:
        self.events.append("init")

    async def shutdown_resources(self) -> None:
        self.events.append("shutdown")
