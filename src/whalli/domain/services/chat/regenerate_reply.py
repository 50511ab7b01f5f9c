"""Use case: replace a chat's last reply with a new one to the same message."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import (
    ModelCatalog,
    ModelSpec,
    check_max_tokens,
    check_reasoning,
    ensure_model_allowed,
)
from whalli.domain.model.chat_sessions import THIS_PROCESS, ChatSession
from whalli.domain.model.chats import GenerationParams, Message
from whalli.domain.model.errors import InvalidInput, ModelNotFound
from whalli.domain.model.presets import applied
from whalli.domain.model.principal import CredentialId
from whalli.domain.model.reply_versions import MAX_EARLIER_VERSIONS, last_exchange
from whalli.domain.model.users import User
from whalli.domain.services.chat.context import ContextLimits, PreparedReply
from whalli.domain.services.chat.opening import (
    LaunchReply,
    caller,
    opening_reply,
    prompt_for,
    with_images_read,
)
from whalli.domain.services.chat.prompt_files import ReadImages
from whalli.domain.services.chats.access import require_chat
from whalli.domain.services.presets.rules import require_preset
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork


class RegenerateReply(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    # The caller as authentication read it for this request (fresh); saves reading it again.
    user: User | None = None
    user_read_at: datetime | None = None  # when ``user`` was read
    # What the caller is authenticated by: the session's id admits nobody once it ended
    credential: CredentialId = CredentialId()
    chat_id: UUID
    model: str | None = None  # None: the model of the reply it replaces
    # The user's message edited before it is answered again; None: answered as it is.
    message: str | None = None
    params: GenerationParams = GenerationParams()
    # Parameters (``GenerationParams`` field names) the caller unset on purpose: the provider's
    # default, taken neither from the replaced reply nor from a preset
    cleared: frozenset[str] = frozenset()
    # The caller's preset: its model unless ``model`` is given, its parameters where ``params``
    # leaves them unset (the chat keeps its own system prompt)
    preset_id: UUID | None = None

    def __post_init__(self) -> None:
        unknown = self.cleared - set(GenerationParams.__struct_fields__)
        if unknown:
            raise InvalidInput(f"Unknown parameters: {', '.join(sorted(unknown))}.", field="params")


class RegeneratedReply(msgspec.Struct, frozen=True, kw_only=True):
    session: ChatSession
    message_id: UUID  # the user's message the new reply answers
    # the reply replaced (kept as an earlier version); None: the message had none
    replaced_message_id: UUID | None
    prepared: PreparedReply


class RegenerateReplyHandler:
    """Answer a chat's last message again: its last reply is replaced by a new one.

    Rules:
    - the caller needs write access to the chat's project (a chat they may not read answers
      404, a viewer's request 403);
    - the chat must end with a finished reply (``complete``, ``aborted`` or ``failed``) to a
      user's message, or with a user's message that has no reply (a fork at a question, an
      imported conversation ending with one): it is answered, nothing replaced; while a reply
      is still being generated, ``ReplyInProgress`` (409); a chat ending otherwise,
      ``NothingToRegenerate`` (409);
    - the model is the one asked for, or the replaced reply's; it must exist with its provider
      configured (else ``ModelNotFound``; for the replaced reply's, ``InvalidInput`` asking
      for a model, as for an imported reply or when there is no reply to replace) and the
      caller's plan, read fresh, must include it;
    - with ``preset_id`` (the caller's own preset, else ``PresetNotFound``, 404), the preset's
      model unless one is asked for, and its parameters where none are given; the chat keeps
      its system prompt;
    - by the replaced reply's model, the parameters it was asked with fill in what the request
      (and the preset) leave unset: Regenerate asks again as before; a parameter the request
      clears (``cleared``) is taken from neither, and the provider's default applies;
    - with ``message``, that user's message is edited first (its attachments stay), and saved
      with the new reply;
    - the prompt is built as the start built it: the messages before that user's message
      (with their files' text), trimmed to the model's window, and its attached files' text;
      a file of its deleted, failed or moved to another project since is left out (as an
      earlier message's is), never an error: the user named no file in this request;
    - the new reply is never answered from the prompt cache nor stored in it: asking again
      means wanting another answer;
    - the chat is locked first, so a regeneration, a new message (``StartChat``) and the
      chat's deletion in the same chat run one after the other: of two regenerations at once
      the second gets ``ReplyInProgress``, after a deletion ``ChatNotFound``;
    - the old reply leaves the conversation as an earlier version of the answer (with the
      question's text it answered; at most ``MAX_EARLIER_VERSIONS`` kept, the oldest dropped)
      and the new pending one is saved, in one transaction; the session is opened, and the
      generation launched, as at the start (``opening_reply``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        sessions: ChatSessionStore,
        catalog: ModelCatalog,
        enabled_providers: frozenset[str],
        *,
        clock: Clock,
        ids: IdGenerator,
        ttl: timedelta = timedelta(minutes=10),
        context_limits: ContextLimits | None = None,
        blobs: BlobStorage | None = None,
        process: str = THIS_PROCESS,
    ) -> None:
        self._blobs, self._process = blobs, process
        self._uow, self._sessions, self._catalog = uow, sessions, catalog
        self._limits = context_limits or ContextLimits()
        self._enabled, self._clock, self._ids, self._ttl = enabled_providers, clock, ids, ttl

    async def execute(
        self, command: RegenerateReply, launch: LaunchReply | None = None
    ) -> RegeneratedReply:
        return await with_images_read(
            self._blobs, lambda images: self._regenerate(command, launch, images)
        )

    async def _regenerate(
        self, command: RegenerateReply, launch: LaunchReply | None, images: ReadImages | None
    ) -> RegeneratedReply:
        async with opening_reply(self._sessions) as opening, self._uow as uow:
            # locked: another regeneration, a new message or the chat's deletion waits for it
            chat = await require_chat(uow, command.chat_id, command.user_id, "write", lock=True)
            now = self._clock.now()  # once locked: what waited for the lock comes later
            history, question, old = last_exchange(await uow.chats.list_messages(chat.id))
            asked = question.content  # what the old reply answered
            model, params = command.model, command.params
            if command.preset_id is not None:
                preset = await require_preset(uow, command.preset_id, command.user_id)
                model, params, _ = applied(
                    preset, model=model, params=params, system_prompt=None, new_chat=False,
                    cleared=command.cleared,
                )  # fmt: skip
            spec = self._model(model, old)
            if old is not None and old.model == spec.id:  # asked again as it was asked
                params = params.filled_from(old.params, but=command.cleared)
            check_reasoning(spec, params.reasoning_effort)
            check_max_tokens(spec, params.max_tokens)
            user, user_read_at = await caller(
                uow, command.user_id, command.user, command.user_read_at, now
            )
            ensure_model_allowed(user, spec)
            if command.message is not None:
                question.edit(command.message, now)
            prompt, source = await prompt_for(
                uow, chat, history, question.content, question.attachment_ids,
                spec=spec, limits=self._limits, blobs=self._blobs, images=images,
                reply_tokens=params.max_tokens, effort=params.reasoning_effort, strict=False,
            )  # fmt: skip
            reply = Message.pending_reply(
                id=self._ids.new_id(), chat_id=chat.id, model=spec.id, provider=spec.provider,
                now=now, params=params,
            )  # fmt: skip
            session = ChatSession.open(
                id=self._ids.new_token(32), user_id=command.user_id, chat_id=chat.id,
                project_id=chat.project_id, user_message_id=question.id,
                reply_message_id=reply.id, model=spec.id, now=now, params=params,
                use_cache=False, attachment_ids=question.attachment_ids, ttl=self._ttl,
                user_read_at=user_read_at, process=self._process, credential=command.credential,
            )  # fmt: skip
            prepared = PreparedReply(reply=reply, prompt=prompt, source=source)

            async def write() -> None:
                if old is not None:
                    await uow.chats.supersede_reply(
                        old.id, question_id=question.id, asked=asked, now=now,
                        keep=MAX_EARLIER_VERSIONS,
                    )  # fmt: skip
                if command.message is not None:
                    await uow.chats.update_message(question)
                await uow.chats.add_messages([reply])
                await uow.chats.touch(chat.id, now)  # (a rename meanwhile stays)
                await uow.commit()

            async def undo() -> None:  # the reply could not be opened after all
                async with self._uow as again:
                    await again.chats.lock(chat.id)
                    await again.chats.delete_message(reply.id)
                    if old is not None:
                        await again.chats.restore_version(old.id)
                    if command.message is not None:  # the question takes back its text
                        question.edit(asked, now)
                        await again.chats.update_message(question)
                    await again.commit()

            await opening.save_and_launch(session, prepared, now, launch, write, undo)
        return RegeneratedReply(
            session=session, message_id=question.id,
            replaced_message_id=None if old is None else old.id,
            prepared=prepared,
        )  # fmt: skip

    def _model(self, asked: str | None, old: Message | None) -> ModelSpec:
        """The model asked for (``ModelNotFound`` when unavailable), else the replaced reply's:
        when that one is not available (retired, or an imported reply's label such as
        ``chatgpt/gpt-4o``), ``InvalidInput`` asks for a model."""
        try:
            spec = self._catalog.get(asked or (old.model if old is not None else None) or "")
            if spec.provider not in self._enabled:
                raise ModelNotFound(f"The model {spec.id} is not available.")
        except ModelNotFound:
            if asked is not None:
                raise
            if old is None:
                raise InvalidInput(
                    "This chat's last message has no reply to take the model from; name the "
                    "model to answer with.",
                    field="model",
                ) from None
            raise InvalidInput(
                f"This reply's model ({old.model or 'none'}) is not available here; name the "
                "model to answer with.",
                field="model",
            ) from None
        return spec
