"""The ASGI entry: ``uvicorn --factory whalli.entrypoints.http.asgi:app_factory``."""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable
from typing import TypeVar

import structlog
from dependency_injector import providers
from litestar import Litestar

from whalli.adapters.prometheus.metrics import count_chat_start_wait
from whalli.adapters.redis.reply_relay import RelayedReplyStream
from whalli.adapters.structlog.logging import configure_logging
from whalli.config import Settings, load_settings
from whalli.container import Container, build_container
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.admin.list_users import ListUsersHandler
from whalli.domain.services.admin.summarize_feedback import SummarizeFeedbackHandler
from whalli.domain.services.admin.update_user import UpdateUserHandler
from whalli.domain.services.api_keys.create_api_key import CreateApiKeyHandler
from whalli.domain.services.api_keys.list_api_keys import ListApiKeysHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKeyHandler
from whalli.domain.services.auth.authenticate import AuthenticateHandler
from whalli.domain.services.auth.change_password import ChangePasswordHandler
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
from whalli.domain.services.auth.update_profile import UpdateProfileHandler
from whalli.domain.services.auth.verify_email import VerifyEmailHandler
from whalli.domain.services.chat.attach_stream import AttachStreamHandler
from whalli.domain.services.chat.complete import CompleteChatHandler
from whalli.domain.services.chat.generate_reply import GenerateReplyHandler
from whalli.domain.services.chat.read_reply import ReadReplyHandler
from whalli.domain.services.chat.regenerate_reply import RegenerateReplyHandler
from whalli.domain.services.chat.start_chat import StartChatHandler
from whalli.domain.services.chat.stop_generation import StopGenerationHandler
from whalli.domain.services.chat.streaming import StopBoard
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
from whalli.entrypoints.http.admission import StartGate
from whalli.entrypoints.http.app import create_app
from whalli.entrypoints.http.draining import ShutdownDrain
from whalli.entrypoints.http.generation import GenerationSupervisor
from whalli.ports.oauth_provider import OAuthProvider

log = structlog.get_logger(__name__)
T = TypeVar("T")
GC_THRESHOLDS = (5_000, 10, 100)


class ContainerApp:
    """Adapts the dependency-injector container to what the HTTP app asks of it.

    Providers that depend on async resources (pools) hand back awaitables, so every use case is
    resolved with ``await``; each call builds a fresh handler with its own unit of work.
    """

    def __init__(self, container: Container) -> None:
        self.container = container
        self._oauth: dict[str, OAuthProvider] = {}
        self._generations = GenerationSupervisor()
        self._drain = ShutdownDrain(self.settings.shutdown_drain_s)
        self._start_gate = StartGate(
            self.settings.chat_start_slots, self.settings.chat_start_max_wait_s,
            on_wait=count_chat_start_wait,
        )  # fmt: skip

    @property
    def generations(self) -> GenerationSupervisor:
        return self._generations

    @property
    def drain(self) -> ShutdownDrain:
        return self._drain

    @property
    def start_gate(self) -> StartGate:
        return self._start_gate

    @property
    def settings(self) -> Settings:
        settings: Settings = self.container.settings()
        return settings

    async def _get(self, provider: Callable[[], object], kind: type[T]) -> T:
        value = provider()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, kind):
            raise TypeError(f"the container built {type(value).__name__}, not {kind.__name__}")
        return value

    async def check_readiness(self) -> CheckReadiness:
        return await self._get(self.container.services.check_readiness, CheckReadiness)

    async def authenticate(self) -> AuthenticateHandler:
        return await self._get(self.container.services.authenticate, AuthenticateHandler)

    async def register(self) -> RegisterHandler:
        return await self._get(self.container.services.register, RegisterHandler)

    async def login(self) -> LoginHandler:
        return await self._get(self.container.services.login, LoginHandler)

    async def refresh_session(self) -> RefreshSessionHandler:
        return await self._get(self.container.services.refresh_session, RefreshSessionHandler)

    async def logout(self) -> LogoutHandler:
        return await self._get(self.container.services.logout, LogoutHandler)

    async def logout_all(self) -> LogoutAllHandler:
        return await self._get(self.container.services.logout_all, LogoutAllHandler)

    async def change_password(self) -> ChangePasswordHandler:
        return await self._get(self.container.services.change_password, ChangePasswordHandler)

    async def request_password_reset(self) -> RequestPasswordResetHandler:
        return await self._get(
            self.container.services.request_password_reset, RequestPasswordResetHandler
        )

    async def reset_password(self) -> ResetPasswordHandler:
        return await self._get(self.container.services.reset_password, ResetPasswordHandler)

    async def request_email_verification(self) -> RequestEmailVerificationHandler:
        return await self._get(
            self.container.services.request_email_verification, RequestEmailVerificationHandler
        )

    async def verify_email(self) -> VerifyEmailHandler:
        return await self._get(self.container.services.verify_email, VerifyEmailHandler)

    async def delete_account(self) -> DeleteAccountHandler:
        return await self._get(self.container.services.delete_account, DeleteAccountHandler)

    async def update_profile(self) -> UpdateProfileHandler:
        return await self._get(self.container.services.update_profile, UpdateProfileHandler)

    async def get_profile(self) -> GetProfileHandler:
        return await self._get(self.container.services.get_profile, GetProfileHandler)

    async def create_project(self) -> CreateProjectHandler:
        return await self._get(self.container.services.create_project, CreateProjectHandler)

    async def list_projects(self) -> ListProjectsHandler:
        return await self._get(self.container.services.list_projects, ListProjectsHandler)

    async def get_project(self) -> GetProjectHandler:
        return await self._get(self.container.services.get_project, GetProjectHandler)

    async def rename_project(self) -> RenameProjectHandler:
        return await self._get(self.container.services.rename_project, RenameProjectHandler)

    async def delete_project(self) -> DeleteProjectHandler:
        return await self._get(self.container.services.delete_project, DeleteProjectHandler)

    async def list_members(self) -> ListMemberProfilesHandler:
        return await self._get(self.container.services.list_members, ListMemberProfilesHandler)

    async def add_member(self) -> AddMemberHandler:
        return await self._get(self.container.services.add_member, AddMemberHandler)

    async def change_member_role(self) -> ChangeMemberRoleHandler:
        return await self._get(self.container.services.change_member_role, ChangeMemberRoleHandler)

    async def remove_member(self) -> RemoveMemberHandler:
        return await self._get(self.container.services.remove_member, RemoveMemberHandler)

    async def list_models(self) -> ListModelsHandler:
        return await self._get(self.container.services.list_models, ListModelsHandler)

    async def list_users(self) -> ListUsersHandler:
        return await self._get(self.container.services.list_users, ListUsersHandler)

    async def summarize_usage(self) -> SummarizeUsageHandler:
        return await self._get(self.container.services.summarize_usage, SummarizeUsageHandler)

    async def summarize_feedback(self) -> SummarizeFeedbackHandler:
        return await self._get(self.container.services.summarize_feedback, SummarizeFeedbackHandler)

    async def update_user(self) -> UpdateUserHandler:
        return await self._get(self.container.services.update_user, UpdateUserHandler)

    async def create_api_key(self) -> CreateApiKeyHandler:
        return await self._get(self.container.services.create_api_key, CreateApiKeyHandler)

    async def list_api_keys(self) -> ListApiKeysHandler:
        return await self._get(self.container.services.list_api_keys, ListApiKeysHandler)

    async def revoke_api_key(self) -> RevokeApiKeyHandler:
        return await self._get(self.container.services.revoke_api_key, RevokeApiKeyHandler)

    async def request_limits(self) -> RequestLimits:
        return await self._get(self.container.services.request_limits, RequestLimits)

    async def start_oauth(self) -> StartOAuth:
        return await self._get(self.container.services.start_oauth, StartOAuth)

    async def complete_oauth(self) -> CompleteOAuth:
        return await self._get(self.container.services.complete_oauth, CompleteOAuth)

    async def oauth_links(self) -> OAuthLinks:
        return await self._get(self.container.services.oauth_links, OAuthLinks)

    async def start_chat(self) -> StartChatHandler:
        return await self._get(self.container.services.start_chat, StartChatHandler)

    async def regenerate_reply(self) -> RegenerateReplyHandler:
        return await self._get(self.container.services.regenerate_reply, RegenerateReplyHandler)

    async def generate_reply(self) -> GenerateReplyHandler:
        return await self._get(self.container.services.generate_reply, GenerateReplyHandler)

    async def attach_stream(self) -> AttachStreamHandler:
        return await self._get(self.container.services.attach_stream, AttachStreamHandler)

    async def read_reply(self) -> ReadReplyHandler:
        return await self._get(self.container.services.read_reply, ReadReplyHandler)

    async def stop_generation(self) -> StopGenerationHandler:
        return await self._get(self.container.services.stop_generation, StopGenerationHandler)

    async def complete_chat(self) -> CompleteChatHandler:
        return await self._get(self.container.services.complete_chat, CompleteChatHandler)

    async def list_chats(self) -> ListChatsHandler:
        return await self._get(self.container.services.list_chats, ListChatsHandler)

    async def get_chat(self) -> GetChatHandler:
        return await self._get(self.container.services.get_chat, GetChatHandler)

    async def update_chat(self) -> UpdateChatHandler:
        return await self._get(self.container.services.update_chat, UpdateChatHandler)

    async def rate_reply(self) -> RateReplyHandler:
        return await self._get(self.container.services.rate_reply, RateReplyHandler)

    async def list_reply_versions(self) -> ListReplyVersionsHandler:
        return await self._get(
            self.container.services.list_reply_versions, ListReplyVersionsHandler
        )

    async def restore_reply_version(self) -> RestoreReplyVersionHandler:
        return await self._get(
            self.container.services.restore_reply_version, RestoreReplyVersionHandler
        )

    async def share_chat(self) -> ShareChatHandler:
        return await self._get(self.container.services.share_chat, ShareChatHandler)

    async def list_chat_shares(self) -> ListChatSharesHandler:
        return await self._get(self.container.services.list_chat_shares, ListChatSharesHandler)

    async def revoke_chat_share(self) -> RevokeChatShareHandler:
        return await self._get(self.container.services.revoke_chat_share, RevokeChatShareHandler)

    async def read_shared_chat(self) -> ReadSharedChatHandler:
        return await self._get(self.container.services.read_shared_chat, ReadSharedChatHandler)

    async def delete_chat(self) -> DeleteChatHandler:
        return await self._get(self.container.services.delete_chat, DeleteChatHandler)

    async def search_chats(self) -> SearchChatsHandler:
        return await self._get(self.container.services.search_chats, SearchChatsHandler)

    async def import_chats(self) -> ImportChatsHandler:
        return await self._get(self.container.services.import_chats, ImportChatsHandler)

    async def fork_chat(self) -> ForkChatHandler:
        return await self._get(self.container.services.fork_chat, ForkChatHandler)

    async def create_preset(self) -> CreatePresetHandler:
        return await self._get(self.container.services.create_preset, CreatePresetHandler)

    async def list_presets(self) -> ListPresetsHandler:
        return await self._get(self.container.services.list_presets, ListPresetsHandler)

    async def update_preset(self) -> UpdatePresetHandler:
        return await self._get(self.container.services.update_preset, UpdatePresetHandler)

    async def delete_preset(self) -> DeletePresetHandler:
        return await self._get(self.container.services.delete_preset, DeletePresetHandler)

    async def create_search(self) -> CreateSearchHandler:
        return await self._get(self.container.services.create_search, CreateSearchHandler)

    async def list_searches(self) -> ListSearchesHandler:
        return await self._get(self.container.services.list_searches, ListSearchesHandler)

    async def get_search(self) -> GetSearchHandler:
        return await self._get(self.container.services.get_search, GetSearchHandler)

    async def update_search(self) -> UpdateSearchHandler:
        return await self._get(self.container.services.update_search, UpdateSearchHandler)

    async def delete_search(self) -> DeleteSearchHandler:
        return await self._get(self.container.services.delete_search, DeleteSearchHandler)

    async def list_search_results(self) -> ListSearchResultsHandler:
        return await self._get(
            self.container.services.list_search_results, ListSearchResultsHandler
        )

    async def list_notifications(self) -> ListNotificationsHandler:
        return await self._get(self.container.services.list_notifications, ListNotificationsHandler)

    async def count_unread_notifications(self) -> CountUnreadNotificationsHandler:
        return await self._get(
            self.container.services.count_unread_notifications, CountUnreadNotificationsHandler
        )

    async def mark_notification_read(self) -> MarkNotificationReadHandler:
        return await self._get(
            self.container.services.mark_notification_read, MarkNotificationReadHandler
        )

    async def mark_all_notifications_read(self) -> MarkAllNotificationsReadHandler:
        return await self._get(
            self.container.services.mark_all_notifications_read, MarkAllNotificationsReadHandler
        )

    async def upload_attachment(self) -> UploadAttachmentHandler:
        return await self._get(self.container.services.upload_attachment, UploadAttachmentHandler)

    async def list_attachments(self) -> ListAttachmentsHandler:
        return await self._get(self.container.services.list_attachments, ListAttachmentsHandler)

    async def get_attachment(self) -> GetAttachmentHandler:
        return await self._get(self.container.services.get_attachment, GetAttachmentHandler)

    async def open_attachment_content(self) -> OpenAttachmentContentHandler:
        return await self._get(
            self.container.services.open_attachment_content, OpenAttachmentContentHandler
        )

    async def delete_attachment(self) -> DeleteAttachmentHandler:
        return await self._get(self.container.services.delete_attachment, DeleteAttachmentHandler)

    async def watch_attachment(self) -> WatchAttachmentHandler:
        return await self._get(self.container.services.watch_attachment, WatchAttachmentHandler)

    async def transcribe_speech(self) -> TranscribeSpeechHandler:
        return await self._get(self.container.services.transcribe_speech, TranscribeSpeechHandler)

    def oauth_provider(self, name: str) -> OAuthProvider | None:
        return self._oauth.get(name)

    async def init_resources(self) -> None:
        result = self.container.init_resources()
        if inspect.isawaitable(result):
            await result
        _resolve_synchronously(self.container)
        providers = await _maybe_await(self.container.adapters.oauth_providers())
        self._oauth = dict(providers) if isinstance(providers, dict) else {}
        try:
            storage = self.container.adapters.blob_storage()
            await storage.ensure_bucket()
        except ServiceUnavailable as e:
            # Start anyway: readiness reports s3 until it answers, and the bucket is retried then.
            log.warning("s3_bucket_not_ensured", reason=e.message)

    async def shutdown_resources(self) -> None:
        # let running replies finish and be saved; those past the grace are stopped (saved)
        board = await _maybe_await(self.container.services.stop_board())
        await self._generations.shutdown(board.stop_all if isinstance(board, StopBoard) else None)
        stream = await _maybe_await(self.container.adapters.reply_stream())
        if isinstance(stream, RelayedReplyStream):
            # their last events reach Redis before the client closes, and the beats stop
            await stream.aclose()
        result = self.container.shutdown_resources()
        if inspect.isawaitable(result):
            await result


def tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing streams.

    With CPython's defaults, under load (100 open streams) a full collection ran about once a
    second and paused the event loop 100-300 ms each time (``gc.callbacks`` timings under
    bench_chat): every live stream stalled that long. Objects alive after start-up (modules,
    the app, the container) are moved out of the collector's reach (``gc.freeze``) and the
    thresholds raised (``GC_THRESHOLDS``: the young generation every 5,000 allocations instead
    of 700, full collections after 100 middle ones instead of 10). In a whole bench_chat run
    that left 19 pauses over 10 ms, 0.55 s in all, the longest 78 ms.

    Process-wide, so the server's app factory sets it up after start-up; tests do not.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _resolve_synchronously(container: Container) -> None:
    """Once the async resources (pools, clients) are up, hand them out as plain values.

    In async mode every provider depending on one returns an awaitable, and resolving it takes
    several event-loop turns and 25-65 µs per handler (measured), against 4-16 µs built
    directly; a request resolves several handlers. ``_get`` accepts either.
    """
    for provider in container.traverse(types=[providers.Resource]):
        if provider.initialized:
            provider.disable_async_mode()


async def _maybe_await(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


def build_app(settings: Settings, container: Container | None = None) -> Litestar:
    return create_app(ContainerApp(container or build_container(settings)))


def app_factory() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_dir, json=settings.log_json)
    container = ContainerApp(build_container(settings))
    app = create_app(container)
    app.on_startup.append(tune_gc)  # after the container's resources are up
    # the server's signal handlers are in place by now: SIGTERM drains first
    app.on_startup.append(container.drain.install)
    return app
