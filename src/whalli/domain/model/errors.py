"""Domain errors: one base with a stable ``code`` and a default message, one subclass per rule.

The HTTP entrypoint maps these classes to status codes in one place; workers let them propagate.
"""

from __future__ import annotations

from typing import ClassVar


class WhalliError(Exception):
    code: ClassVar[str] = "whalli_error"
    default_message: ClassVar[str] = "Something went wrong."

    def __init__(self, message: str | None = None, **details: object) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


# --- input ------------------------------------------------------------------------------------
class InvalidInput(WhalliError):
    code = "invalid_input"
    default_message = "The request is not valid."


class InvalidEmail(InvalidInput):
    code = "invalid_email"
    default_message = "That is not a valid email address."


class InvalidSchedule(InvalidInput):
    code = "invalid_schedule"
    default_message = "That schedule is not allowed."


class InvalidCatalog(InvalidInput):
    code = "invalid_catalog"
    default_message = "The model catalog is not valid."


class InvalidPassword(InvalidInput):
    """A new password breaks the password policy; ``details["rule"]`` names the rule."""

    code = "invalid_password"
    default_message = "That password does not meet the password policy."


class ShareLimitReached(InvalidInput):
    code = "share_limit_reached"
    default_message = "This chat has as many shared links as allowed; revoke one first."


class ShareTooLarge(InvalidInput):
    code = "share_too_large"
    default_message = "This chat is too long to share by link."


class InvalidStateTransition(InvalidInput):
    code = "invalid_state_transition"
    default_message = "That change is not allowed in the current state."


# --- existence and visibility (a resource the caller may not see is reported as not found) ---
class NotFound(WhalliError):
    code = "not_found"
    default_message = "Not found."


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = "User not found."


class ProjectNotFound(NotFound):
    code = "project_not_found"
    default_message = "Project not found."


class MembershipNotFound(NotFound):
    code = "membership_not_found"
    default_message = "Member not found."


class ModelNotFound(NotFound):
    code = "model_not_found"
    default_message = "Model not found."


class ChatNotFound(NotFound):
    code = "chat_not_found"
    default_message = "Chat not found."


class MessageNotFound(NotFound):
    code = "message_not_found"
    default_message = "Message not found."


class ChatSessionNotFound(NotFound):
    code = "chat_session_not_found"
    default_message = "Chat session not found or expired."


class AttachmentNotFound(NotFound):
    code = "attachment_not_found"
    default_message = "File not found."


class TranscriptionNotFound(NotFound):
    code = "transcription_not_found"
    default_message = "Transcription not found."


class SearchSubscriptionNotFound(NotFound):
    code = "search_subscription_not_found"
    default_message = "Search subscription not found."


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    default_message = "Notification not found."


class ShareNotFound(NotFound):
    """A shared link that does not exist, was revoked, or whose chat was deleted."""

    code = "share_not_found"
    default_message = "This shared chat does not exist or is no longer shared."


class BlobNotFound(NotFound):
    code = "blob_not_found"
    default_message = "Stored object not found."


# --- conflicts ---------------------------------------------------------------------------------
class Conflict(WhalliError):
    code = "conflict"
    default_message = "The request conflicts with the current state."


class ReplyInProgress(Conflict):
    code = "reply_in_progress"
    default_message = "A reply is still being generated in this chat: stop it or let it finish."


class NothingToRegenerate(Conflict):
    code = "nothing_to_regenerate"
    default_message = "The chat does not end with a finished reply to a message."


class NotTheLastReply(Conflict):
    code = "not_the_last_reply"
    default_message = "Only the chat's last reply can be switched to an earlier version."


class EmailAlreadyVerified(Conflict):
    code = "email_already_verified"
    default_message = "This account's email address is verified already."


class EmailAlreadyRegistered(Conflict):
    code = "email_taken"
    default_message = "An account with this email already exists."


class AlreadyMember(Conflict):
    code = "already_member"
    default_message = "That user is already a member of the project."


class LastOwner(Conflict):
    code = "last_owner"
    default_message = "A project needs at least one owner."


class LastAdmin(Conflict):
    code = "last_admin"
    default_message = "Whalli needs at least one active admin."


class OwnsSharedProjects(Conflict):
    """An account deletion refused: the account owns projects other members still use
    (``project_ids``); they must be handed over or deleted first."""

    code = "owns_shared_projects"
    default_message = (
        "You own projects other members use: transfer their ownership or delete them first."
    )


# --- access ------------------------------------------------------------------------------------
class Unauthenticated(WhalliError):
    code = "unauthenticated"
    default_message = "Authentication required."


class InvalidToken(Unauthenticated):
    """A credential token was malformed, forged, expired or of the wrong kind.

    The message says why in general terms and never contains the token itself.
    """

    code = "invalid_token"
    default_message = "The token is invalid or has expired."


class RefreshTokenReused(InvalidToken):
    """A refresh token was presented again after it had been rotated: its family is compromised."""

    code = "refresh_token_reused"
    default_message = "The token is invalid or has expired."


class PermissionDenied(WhalliError):
    code = "permission_denied"
    default_message = "You are not allowed to do that."


class ApiKeyNotAllowed(PermissionDenied):
    """An action that could take over the account (changing its password) needs a session:
    an API key, however it leaked, must not be enough."""

    code = "api_key_not_allowed"
    default_message = "An API key cannot do that; sign in with your password."


class ReauthenticationRequired(PermissionDenied):
    """An action that ends the account needs a sign-in made moments ago when nothing else can
    confirm it (an account without a password): a stolen access token is not enough."""

    code = "reauthentication_required"
    default_message = "Sign in again, then retry within a few minutes."


class ModelNotInPlan(PermissionDenied):
    code = "model_not_in_plan"
    default_message = "Your plan does not include this model."


class PersonalProjectProtected(PermissionDenied):
    """A personal project cannot be deleted, and the user it belongs to stays its owner."""

    code = "personal_project_protected"
    default_message = "A personal project cannot be deleted or taken from its owner."


class AccountDisabled(Unauthenticated):
    code = "account_disabled"
    default_message = "This account is disabled."


class RateLimited(WhalliError):
    code = "rate_limited"
    default_message = "Too many requests."


# --- files ---------------------------------------------------------------------------------------
class AttachmentTooLarge(WhalliError):
    code = "attachment_too_large"
    default_message = "The file is larger than allowed."


class ImportTooLarge(WhalliError):
    code = "import_too_large"
    default_message = "This import is larger than allowed; split it."


class UnsupportedFileType(WhalliError):
    code = "unsupported_file_type"
    default_message = "This type of file is not supported."


class TranscriptionNotConfigured(InvalidInput):
    """Audio is transcribed, and this server has no speech-to-text provider configured."""

    code = "transcription_not_configured"
    default_message = "voice transcription is not configured on this server"


# --- infrastructure (raised by adapters from driver errors) --------------------------------------
class ServiceUnavailable(WhalliError):
    code = "service_unavailable"
    default_message = "A backing service is unavailable; try again shortly."


class MigrationError(WhalliError):
    code = "migration_error"
    default_message = "The database migrations could not be applied."


class ExtractionFailed(WhalliError):
    code = "extraction_failed"
    default_message = "The text could not be extracted from this file."


class ProviderError(WhalliError):
    """An AI provider failed; ``retryable`` tells whether trying again may help."""

    code = "provider_error"
    default_message = "The model provider failed."
    retryable: bool = False

    @property
    def falls_back(self) -> bool:
        """Whether the catalog's fallback model may answer instead. Not when the provider
        refused this very request as invalid: another model would then answer, silently, a
        request the one asked for cannot take."""
        return self.details.get("kind") != "invalid_request"


class ProviderRejectedRequest(ProviderError):
    """The provider refused this very request as invalid (its HTTP 400, 413 or 422: a context
    too long, a parameter value it does not take, an image it cannot read), or an adapter knows
    it would before calling it. The caller's request is at fault: the caller is told so (not a
    bad gateway) with the provider's own explanation in the message; trying again, or another
    model, would not help (never ``retryable``, never ``falls_back``). ``details["kind"]`` is
    ``"invalid_request"`` as for any such ``ProviderError``."""

    code = "provider_rejected_request"
    default_message = "The model provider rejected the request."

    @property
    def falls_back(self) -> bool:
        return False


class ProviderRateLimited(ProviderError):
    """The provider kept answering that it is rate limiting requests (its HTTP 429), through
    every attempt and fallback: the caller is told so (a 429, with the provider's
    ``details["retry_after"]`` seconds when it said), so that a client backs off as it does
    for a rate limit, not for a failed server. ``details["kind"]`` is ``"rate_limited"``."""

    code = "provider_rate_limited"
    default_message = "The model provider is rate limiting requests."


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    default_message = "API key not found."


class OAuthFailed(InvalidInput):
    code = "oauth_failed"
    default_message = "Signing in with that provider failed."


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    default_message = "The email or password is not correct."


class AttachmentNotReady(Conflict):
    code = "attachment_not_ready"
    default_message = "An attached file is not ready yet."


class PresetNotFound(NotFound):
    """A preset that does not exist or is someone else's."""

    code = "preset_not_found"
    default_message = "Preset not found."


class PasswordResetNotConfigured(InvalidInput):
    """A password reset is asked for, and this server sends no email (no SMTP server)."""

    code = "password_reset_not_configured"
    default_message = (
        "Password resets by email are not available on this server (it sends no email); "
        "ask an administrator."
    )


class EmailNotConfigured(InvalidInput):
    """An email to the caller is asked for, and this server sends no email (no SMTP server)."""

    code = "email_not_configured"
    default_message = "This server sends no email; ask an administrator."


class EmailVerificationInvalid(InvalidInput):
    """A verification link's token that is malformed, forged, expired, another account's or
    for an address the account no longer has: one answer for all."""

    code = "email_verification_invalid"
    default_message = (
        "This verification link is not valid for your account or has expired; ask for a new one."
    )


class PasswordResetInvalid(InvalidInput):
    """A reset link's token that is malformed, forged, expired, already used, or for an account
    that changed since (another address, another password, disabled, deleted): one answer for
    all, so that a token tells nothing about the account."""

    code = "password_reset_invalid"
    default_message = "This password reset link is not valid or has expired; ask for a new one."


class SearchesNotConfigured(InvalidInput):
    """A recurring search is asked for, and this server has no web search provider configured."""

    code = "searches_not_configured"
    default_message = "recurring web searches are not configured on this server"


class SearchLimitReached(Conflict):
    code = "search_limit_reached"
    default_message = "You have as many active recurring searches as allowed; pause one first."


class PresetLimitReached(InvalidInput):
    code = "preset_limit_reached"
    default_message = "You have as many presets as allowed; delete one first."
