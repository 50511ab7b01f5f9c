"""What the HTTP app needs from the composition root, and the Litestar providers asking it."""

from __future__ import annotations

from typing import Protocol

from litestar.di import Provide
from litestar.params import FromPath

from whalli.config import Settings
from whalli.domain.model.errors import NotFound
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
from whalli.entrypoints.http.draining import ShutdownDrain
from whalli.entrypoints.http.generation import GenerationSupervisor
from whalli.entrypoints.http.security import provide_principal
from whalli.ports.oauth_provider import OAuthProvider


class AppContainer(Protocol):
    """The slice of the composition root the HTTP app uses (the container satisfies it via a
    thin wrapper). ``init_resources``/``shutdown_resources`` run on app startup/shutdown."""

    @property
    def settings(self) -> Settings: ...

    async def check_readiness(self) -> CheckReadiness: ...

    async def request_limits(self) -> RequestLimits: ...

    # Accounts and sessions; ``authenticate`` runs on every private request (security.py).
    async def authenticate(self) -> AuthenticateHandler: ...
    async def register(self) -> RegisterHandler: ...
    async def login(self) -> LoginHandler: ...
    async def refresh_session(self) -> RefreshSessionHandler: ...
    async def logout(self) -> LogoutHandler: ...
    async def logout_all(self) -> LogoutAllHandler: ...
    async def change_password(self) -> ChangePasswordHandler: ...
    async def request_password_reset(self) -> RequestPasswordResetHandler: ...
    async def reset_password(self) -> ResetPasswordHandler: ...
    async def request_email_verification(self) -> RequestEmailVerificationHandler: ...
    async def verify_email(self) -> VerifyEmailHandler: ...
    async def delete_account(self) -> DeleteAccountHandler: ...
    async def update_profile(self) -> UpdateProfileHandler: ...
    async def get_profile(self) -> GetProfileHandler: ...

    # Projects, members, models, admin, API keys: one fresh handler (and unit of work) per call.
    async def create_project(self) -> CreateProjectHandler: ...
    async def list_projects(self) -> ListProjectsHandler: ...
    async def get_project(self) -> GetProjectHandler: ...
    async def rename_project(self) -> RenameProjectHandler: ...
    async def delete_project(self) -> DeleteProjectHandler: ...
    async def list_members(self) -> ListMemberProfilesHandler: ...
    async def add_member(self) -> AddMemberHandler: ...
    async def change_member_role(self) -> ChangeMemberRoleHandler: ...
    async def remove_member(self) -> RemoveMemberHandler: ...
    async def list_models(self) -> ListModelsHandler: ...
    async def list_users(self) -> ListUsersHandler: ...
    async def summarize_usage(self) -> SummarizeUsageHandler: ...
    async def summarize_feedback(self) -> SummarizeFeedbackHandler: ...
    async def update_user(self) -> UpdateUserHandler: ...
    async def create_api_key(self) -> CreateApiKeyHandler: ...
    async def list_api_keys(self) -> ListApiKeysHandler: ...
    async def revoke_api_key(self) -> RevokeApiKeyHandler: ...

    # Existing chats (list, read, rename, delete, search): one fresh handler per call.
    async def list_chats(self) -> ListChatsHandler: ...
    async def get_chat(self) -> GetChatHandler: ...
    async def update_chat(self) -> UpdateChatHandler: ...
    async def rate_reply(self) -> RateReplyHandler: ...
    async def list_reply_versions(self) -> ListReplyVersionsHandler: ...
    async def restore_reply_version(self) -> RestoreReplyVersionHandler: ...
    async def share_chat(self) -> ShareChatHandler: ...
    async def list_chat_shares(self) -> ListChatSharesHandler: ...
    async def revoke_chat_share(self) -> RevokeChatShareHandler: ...
    async def read_shared_chat(self) -> ReadSharedChatHandler: ...
    async def delete_chat(self) -> DeleteChatHandler: ...
    async def search_chats(self) -> SearchChatsHandler: ...
    async def import_chats(self) -> ImportChatsHandler: ...
    async def fork_chat(self) -> ForkChatHandler: ...

    # Presets
    async def create_preset(self) -> CreatePresetHandler: ...
    async def list_presets(self) -> ListPresetsHandler: ...
    async def update_preset(self) -> UpdatePresetHandler: ...
    async def delete_preset(self) -> DeletePresetHandler: ...

    # Recurring searches and notifications
    async def create_search(self) -> CreateSearchHandler: ...
    async def list_searches(self) -> ListSearchesHandler: ...
    async def get_search(self) -> GetSearchHandler: ...
    async def update_search(self) -> UpdateSearchHandler: ...
    async def delete_search(self) -> DeleteSearchHandler: ...
    async def list_search_results(self) -> ListSearchResultsHandler: ...
    async def list_notifications(self) -> ListNotificationsHandler: ...
    async def count_unread_notifications(self) -> CountUnreadNotificationsHandler: ...
    async def mark_notification_read(self) -> MarkNotificationReadHandler: ...
    async def mark_all_notifications_read(self) -> MarkAllNotificationsReadHandler: ...

    # Files (controllers/files.py): one fresh handler per call.
    async def upload_attachment(self) -> UploadAttachmentHandler: ...
    async def list_attachments(self) -> ListAttachmentsHandler: ...
    async def get_attachment(self) -> GetAttachmentHandler: ...
    async def open_attachment_content(self) -> OpenAttachmentContentHandler: ...
    async def delete_attachment(self) -> DeleteAttachmentHandler: ...
    async def watch_attachment(self) -> WatchAttachmentHandler: ...
    async def transcribe_speech(self) -> TranscribeSpeechHandler: ...

    # OAuth sign-in: ``oauth_provider`` is None for unknown names and disabled providers.
    async def start_oauth(self) -> StartOAuth: ...
    async def complete_oauth(self) -> CompleteOAuth: ...
    async def oauth_links(self) -> OAuthLinks: ...
    def oauth_provider(self, name: str) -> OAuthProvider | None: ...

    # Chat streaming (controllers/chat.py asks for these through the app state).
    @property
    def generations(self) -> GenerationSupervisor: ...
    @property
    def drain(self) -> ShutdownDrain: ...
    @property
    def start_gate(self) -> StartGate: ...
    async def start_chat(self) -> StartChatHandler: ...
    async def regenerate_reply(self) -> RegenerateReplyHandler: ...
    async def generate_reply(self) -> GenerateReplyHandler: ...
    async def attach_stream(self) -> AttachStreamHandler: ...
    async def read_reply(self) -> ReadReplyHandler: ...
    async def stop_generation(self) -> StopGenerationHandler: ...

    # The OpenAI-compatible API (controllers/openai_compat.py): a stateless completion.
    async def complete_chat(self) -> CompleteChatHandler: ...

    async def init_resources(self) -> None: ...

    async def shutdown_resources(self) -> None: ...


def build_dependencies(container: AppContainer) -> dict[str, Provide]:
    """Litestar dependencies, by parameter name; each asks the container on every request."""

    def provide_settings() -> Settings:
        return container.settings

    async def provide_check_readiness() -> CheckReadiness:
        return await container.check_readiness()

    return {
        "settings": Provide(provide_settings, sync_to_thread=False),
        "check_readiness": Provide(provide_check_readiness),
        **_auth_providers(container),
        **_use_case_providers(container),
        **_chat_providers(container),
        **_oauth_providers(container),
        **_file_providers(container),
    }


def _file_providers(container: AppContainer) -> dict[str, Provide]:
    """Files: each parameter name asks the container method of the same name."""
    return {
        "upload_attachment": Provide(container.upload_attachment),
        "list_attachments": Provide(container.list_attachments),
        "get_attachment": Provide(container.get_attachment),
        "open_attachment_content": Provide(container.open_attachment_content),
        "delete_attachment": Provide(container.delete_attachment),
        "watch_attachment": Provide(container.watch_attachment),
        "transcribe_speech": Provide(container.transcribe_speech),
    }


class ChosenOAuthProvider:
    """The provider named in the path. A concrete wrapper because Litestar checks dependency
    values with ``isinstance``, which a ``Protocol`` such as ``OAuthProvider`` does not allow."""

    __slots__ = ("provider",)

    def __init__(self, provider: OAuthProvider) -> None:
        self.provider = provider


def _oauth_providers(container: AppContainer) -> dict[str, Provide]:
    """OAuth sign-in; ``oauth_provider`` reads the ``provider`` path parameter (404 when the
    provider is unknown or not configured)."""

    def provide_oauth_provider(provider: FromPath[str]) -> ChosenOAuthProvider:
        found = container.oauth_provider(provider)
        if found is None:
            raise NotFound("Unknown or disabled sign-in provider.")
        return ChosenOAuthProvider(found)

    return {
        "start_oauth": Provide(container.start_oauth),
        "complete_oauth": Provide(container.complete_oauth),
        "oauth_links": Provide(container.oauth_links),
        "oauth_provider": Provide(provide_oauth_provider, sync_to_thread=False),
    }


def _auth_providers(container: AppContainer) -> dict[str, Provide]:
    """Accounts and sessions; ``principal`` is who the guard authenticated (security.py)."""
    return {
        "principal": Provide(provide_principal, sync_to_thread=False),
        "register": Provide(container.register),
        "login": Provide(container.login),
        "request_limits": Provide(container.request_limits),
        "refresh_session": Provide(container.refresh_session),
        "logout": Provide(container.logout),
        "logout_all": Provide(container.logout_all),
        "change_password": Provide(container.change_password),
        "request_password_reset": Provide(container.request_password_reset),
        "reset_password": Provide(container.reset_password),
        "request_email_verification": Provide(container.request_email_verification),
        "verify_email": Provide(container.verify_email),
        "delete_account": Provide(container.delete_account),
        "update_profile": Provide(container.update_profile),
        "get_profile": Provide(container.get_profile),
    }


def _use_case_providers(container: AppContainer) -> dict[str, Provide]:
    """Projects, members, models, admin, API keys: each parameter name asks the container
    method of the same name, on every request (so every request gets its own unit of work)."""
    return {
        "create_project": Provide(container.create_project),
        "list_projects": Provide(container.list_projects),
        "get_project": Provide(container.get_project),
        "rename_project": Provide(container.rename_project),
        "delete_project": Provide(container.delete_project),
        "list_members": Provide(container.list_members),
        "add_member": Provide(container.add_member),
        "change_member_role": Provide(container.change_member_role),
        "remove_member": Provide(container.remove_member),
        "list_models": Provide(container.list_models),
        "list_users": Provide(container.list_users),
        "summarize_usage": Provide(container.summarize_usage),
        "summarize_feedback": Provide(container.summarize_feedback),
        "update_user": Provide(container.update_user),
        "create_api_key": Provide(container.create_api_key),
        "list_api_keys": Provide(container.list_api_keys),
        "revoke_api_key": Provide(container.revoke_api_key),
    }


def _chat_providers(container: AppContainer) -> dict[str, Provide]:
    """Existing chats: each parameter name asks the container method of the same name."""
    return {
        "list_chats": Provide(container.list_chats),
        "get_chat": Provide(container.get_chat),
        "update_chat": Provide(container.update_chat),
        "rate_reply": Provide(container.rate_reply),
        "list_reply_versions": Provide(container.list_reply_versions),
        "restore_reply_version": Provide(container.restore_reply_version),
        "share_chat": Provide(container.share_chat),
        "list_chat_shares": Provide(container.list_chat_shares),
        "revoke_chat_share": Provide(container.revoke_chat_share),
        "read_shared_chat": Provide(container.read_shared_chat),
        "delete_chat": Provide(container.delete_chat),
        "search_chats": Provide(container.search_chats),
        "import_chats": Provide(container.import_chats),
        "fork_chat": Provide(container.fork_chat),
        "create_preset": Provide(container.create_preset),
        "list_presets": Provide(container.list_presets),
        "update_preset": Provide(container.update_preset),
        "delete_preset": Provide(container.delete_preset),
        "create_search": Provide(container.create_search),
        "list_searches": Provide(container.list_searches),
        "get_search": Provide(container.get_search),
        "update_search": Provide(container.update_search),
        "delete_search": Provide(container.delete_search),
        "list_search_results": Provide(container.list_search_results),
        "list_notifications": Provide(container.list_notifications),
        "count_unread_notifications": Provide(container.count_unread_notifications),
        "mark_notification_read": Provide(container.mark_notification_read),
        "mark_all_notifications_read": Provide(container.mark_all_notifications_read),
        "complete_chat": Provide(container.complete_chat),
    }
