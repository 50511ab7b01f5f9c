"""Use case: accept the user's message and open a streaming session for the reply."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.attachments import AttachmentStatus
from whalli.domain.model.catalog import (
    ModelCatalog,
    ModelSpec,
    check_max_tokens,
    check_reasoning,
    ensure_model_allowed,
)
from whalli.domain.model.chat_sessions import THIS_PROCESS, ChatSession
from whalli.domain.model.chats import Chat, GenerationParams, Message, title_from
from whalli.domain.model.errors import (
    AttachmentNotFound,
    AttachmentNotReady,
    InvalidInput,
    ModelNotFound,
)
from whalli.domain.model.presets import applied
from whalli.domain.model.principal import CredentialId
from whalli.domain.model.users import User
from whalli.domain.services.chat.context import ContextLimits, PreparedReply
from whalli.domain.services.chat.misplaced_files import explained
from whalli.domain.services.chat.opening import (
    LaunchReply,
    caller,
    opening_reply,
    prompt_for,
    with_images_read,
)
from whalli.domain.services.chat.prompt_files import ReadImages
from whalli.domain.services.chat.voice import voice_message
from whalli.domain.services.chats.access import require_chat
from whalli.domain.services.presets.rules import require_preset
from whalli.domain.services.projects.access import project_to_write
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork

MAX_ATTACHMENTS = 10


class StartChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    # The caller as authentication read it for this request (fresh); saves reading it again.
    user: User | None = None
    user_read_at: datetime | None = None  # when ``user`` was read
    # What the caller is authenticated by: the session's id admits nobody once it ended
    credential: CredentialId = CredentialId()
    model: str | None = None  # None: the preset's (one of the two is needed)
    # Empty: a voice message, whose attached recordings' transcript is the message (``voice``)
    message: str
    chat_id: UUID | None = None
    preset_id: UUID | None = None
    project_id: UUID | None = None
    attachment_ids: tuple[UUID, ...] = ()
    params: GenerationParams = GenerationParams()
    use_cache: bool = True
    # A new chat's instructions; an existing chat's are changed with ``UpdateChat``. ``None``:
    # the caller's custom instructions, if any; blank: none for this chat.
    system_prompt: str | None = None


class StartedChat(msgspec.Struct, frozen=True, kw_only=True):
    session: ChatSession
    chat_id: UUID
    message_id: UUID
    # Everything the reply's generation needs, so it calls the provider without a database
    # round trip first: the pending assistant message (saved with the user's) and the prompt.
    prepared: PreparedReply


class StartChatHandler:
    """Save the user's message and open a short-lived chat session for its reply.

    Rules:
    - a preset of the caller's (``preset_id``; anyone else's: ``PresetNotFound``) gives the
      model, parameters and a new chat's system prompt the start leaves out (see
      ``presets.applied``); without one, the model is required (``InvalidInput``);
    - the model must exist and its provider be configured (else ``ModelNotFound``, 404), and
      the caller's plan, read fresh, must include it (``ModelNotInPlan``, 403);
    - an existing chat needs write access to its project, and is locked while its messages
      are read and written (a regeneration or another message in it waits); a new chat goes
      to ``project_id`` (write access) or the caller's personal project (always theirs to
      write: no check), and takes its title from the message (its reply is marked the first
      of a new chat, ``PreparedReply.first_of_new_chat``: once complete, its generation queues
      an automatic title; no extra round trip here); what the caller may not see
      answers 404; a message in an archived chat unarchives it (in the write that marks the
      chat updated: no extra query);
    - a ``project_id`` with ``chat_id`` must be the chat's own (else ``InvalidInput``: the
      message would not go where the caller says);
    - a system prompt is given to a new chat only (``InvalidInput`` with ``chat_id``: an
      existing chat's is changed with ``UpdateChat``); the chat's system prompt opens the
      prompt of every reply in it;
    - a new chat in the caller's personal project started without one (``None``) gets the
      caller's custom instructions, copied (a later change of them changes no existing chat);
      a blank one opts this chat out; a chat in a shared project never gets them (they are
      private, and a chat's system prompt is read by every member). Their
      text is read (one query) only when the account read by authentication says there are
      some: a caller without any costs no extra round trip;
    - a file named more than once is attached once (its first place kept);
    - a start without text is a voice message: the transcript of its attached recordings is
      the message, and titles a new chat (``voice_message``: the files checked and waited for
      as below; no recording, or one where nothing was heard: ``InvalidInput`` naming
      ``message``);
    - attachments must belong to the chat's project (else 404 naming the file's id; a file
      of another project the caller may read is ``InvalidInput`` saying so, see
      ``misplaced_files``) and have finished extraction:
      while one is still ``pending``/``processing`` the start is tried again every
      ``attachment_poll_s`` for up to ``attachment_wait_s``, then ``AttachmentNotReady`` (409,
      naming the file); a ``failed`` one answers that at once, with its reason. An image a
      model that reads images takes as one needs no text: it is sent, pending or OCR failed
      (``textless_images``: not one found damaged, nor one the provider would refuse);
    - the session id is an unguessable token bound to the caller, expiring after ``ttl``;
    - the prompt is built here, from what the transaction read (the chat's earlier messages
      with their files' text, trimmed to the model's window, and the attached files' text;
      ``build_context``): a message that cannot fit
      is refused now (``InvalidInput``, 422) rather than failing its reply later;
    - the message, the chat and the reply's pending assistant message are saved all or none
      (a new chat with its messages in one statement, without a transaction; messages of an
      existing chat in one transaction); the session is stored meanwhile and deleted again if
      the write fails, and its id is only returned after both, so nobody ever reads a session
      pointing at a message that does not exist.
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
        attachment_wait_s: float = 0.0,
        attachment_poll_s: float = 0.25,
        context_limits: ContextLimits | None = None,
        blobs: BlobStorage | None = None,
        process: str = THIS_PROCESS,
    ) -> None:
        self._blobs, self._process = blobs, process
        self._uow, self._sessions, self._catalog = uow, sessions, catalog
        self._limits = context_limits or ContextLimits()
        self._enabled, self._clock, self._ids, self._ttl = enabled_providers, clock, ids, ttl
        if attachment_poll_s <= 0:
            raise ValueError("attachment_poll_s must be more than 0")
        # counted in polls rather than read from the clock, so a test clock cannot stall it
        self._polls = max(0, math.ceil(attachment_wait_s / attachment_poll_s))
        self._poll_s = attachment_poll_s

    async def execute(self, command: StartChat, launch: LaunchReply | None = None) -> StartedChat:
        """With ``launch``, the reply's generation is started as soon as its prompt is known,
        before the writes and the commit, so the provider's latency overlaps them (and the
        client's stream request); a start that fails afterwards cancels it."""
        if command.preset_id is not None:
            command = await self._with_preset(command)
        if command.model is None:
            raise InvalidInput("A start needs a model or a presetId.", field="model")
        spec = self._catalog.get(command.model)
        if spec.provider not in self._enabled:
            raise ModelNotFound(f"The model {command.model} is not available.")
        check_reasoning(spec, command.params.reasoning_effort)
        check_max_tokens(spec, command.params.max_tokens)
        if len(set(command.attachment_ids)) < len(command.attachment_ids):  # each file once
            unique = tuple(dict.fromkeys(command.attachment_ids))
            command = msgspec.structs.replace(command, attachment_ids=unique)
        if len(command.attachment_ids) > MAX_ATTACHMENTS:
            raise AttachmentNotFound(f"At most {MAX_ATTACHMENTS} files can be attached.")
        try:
            return await self._polled(command, spec, launch)
        except AttachmentNotFound as e:  # gone, or in another project (see misplaced_files)
            raise await explained(self._uow, command.user_id, e) from None

    async def _polled(
        self, command: StartChat, spec: ModelSpec, launch: LaunchReply | None
    ) -> StartedChat:
        for _ in range(self._polls):
            try:
                return await self._opened(command, spec, launch)
            except AttachmentNotReady as e:
                if e.details.get("attachment_status") == AttachmentStatus.FAILED:
                    raise
            # everything was rolled back; the next attempt reads the attachments afresh
            await asyncio.sleep(self._poll_s)
        return await self._opened(command, spec, launch)

    async def _opened(
        self, command: StartChat, spec: ModelSpec, launch: LaunchReply | None
    ) -> StartedChat:
        return await with_images_read(
            self._blobs, lambda images: self._start(command, spec, launch, images)
        )

    async def _with_preset(self, command: StartChat) -> StartChat:
        """The start as the caller's preset fills it in (see ``presets.applied``)."""
        assert command.preset_id is not None
        async with self._uow.read_only() as uow:
            preset = await require_preset(uow, command.preset_id, command.user_id)
        model, params, system_prompt = applied(
            preset, model=command.model, params=command.params,
            system_prompt=command.system_prompt, new_chat=command.chat_id is None,
        )  # fmt: skip
        return msgspec.structs.replace(
            command, model=model, params=params, system_prompt=system_prompt
        )

    async def _start(
        self,
        command: StartChat,
        spec: ModelSpec,
        launch: LaunchReply | None,
        images: ReadImages | None,
    ) -> StartedChat:
        now = self._clock.now()
        # A new chat is written by one statement (it and its messages): no transaction needed,
        # which saves its BEGIN and COMMIT round trips. The reads before it (the caller's role,
        # the attachments) hold no lock in a transaction either.
        new_chat = command.chat_id is None
        block = self._uow.autocommit() if new_chat else self._uow
        async with opening_reply(self._sessions) as opening, block as uow:
            user, user_read_at = await caller(
                uow, command.user_id, command.user, command.user_read_at, now
            )
            ensure_model_allowed(user, spec)
            chat, history = await self._chat_for(uow, command, user, now)
            if not command.message:  # a voice message: its recordings' transcript is the text
                voice = await voice_message(uow, chat.project_id, command.attachment_ids)
                command = msgspec.structs.replace(
                    command, message=voice.text, attachment_ids=voice.others
                )
                if history is None:
                    chat.title = title_from(voice.text)
            if history is not None:
                # read again once the chat is locked: an exchange that waited for another one
                # in this chat must not be stamped (and sorted) before it
                now = self._clock.now()
            prompt, source = await prompt_for(
                uow, chat, history, command.message, command.attachment_ids,
                spec=spec, limits=self._limits, blobs=self._blobs, images=images,
                reply_tokens=command.params.max_tokens,
                effort=command.params.reasoning_effort,
            )  # fmt: skip
            message = Message.from_user(
                id=self._ids.new_id(),
                chat_id=chat.id,
                content=command.message,
                now=now,
                attachment_ids=command.attachment_ids,
            )
            reply = Message.pending_reply(
                id=self._ids.new_id(),  # ids increase: the reply sorts after the message
                chat_id=chat.id,
                model=spec.id,
                provider=spec.provider,
                now=now,
                params=command.params,
            )
            session = ChatSession.open(
                id=self._ids.new_token(32),
                user_id=command.user_id,
                chat_id=chat.id,
                project_id=chat.project_id,
                user_message_id=message.id,
                reply_message_id=reply.id,
                model=spec.id,
                now=now,
                params=command.params,
                use_cache=command.use_cache,
                attachment_ids=command.attachment_ids,
                ttl=self._ttl,
                user_read_at=user_read_at,
                process=self._process,
                credential=command.credential,
            )
            prepared = PreparedReply(
                reply=reply, prompt=prompt, source=source,
                new_chat_title=chat.title if new_chat else None,
            )  # fmt: skip

            async def write() -> None:
                if history is None:  # a new chat: it and its messages in one statement
                    await uow.chats.add_with_messages(chat, [message, reply])
                else:
                    await uow.chats.add_messages([message, reply])
                    # (a rename meanwhile stays); a new message brings an archived chat back
                    await uow.chats.touch(chat.id, now, unarchive=True)
                    await uow.commit()

            async def undo() -> None:  # the reply could not be opened after all
                async with self._uow as again:
                    if history is None:
                        await again.chats.delete(chat.id)  # with its messages
                    else:
                        await again.chats.delete_message(reply.id)
                        await again.chats.delete_message(message.id)
                    await again.commit()

            await opening.save_and_launch(session, prepared, now, launch, write, undo)
        return StartedChat(
            session=session,
            chat_id=chat.id,
            message_id=message.id,
            prepared=prepared,
        )

    async def _chat_for(
        self, uow: UnitOfWork, command: StartChat, user: User, now: datetime
    ) -> tuple[Chat, list[Message] | None]:
        """The chat, and its earlier messages (``None`` for a new chat, not stored yet)."""
        if command.chat_id is not None:
            if command.system_prompt is not None:
                raise InvalidInput(
                    "A system prompt is given to a new chat; change an existing chat's with "
                    "PATCH /api/chats/{id}.",
                    field="systemPrompt",
                )
            # locked: a regeneration or another message in this chat waits for this one
            chat = await require_chat(uow, command.chat_id, command.user_id, "write", lock=True)
            if command.project_id is not None and command.project_id != chat.project_id:
                raise InvalidInput(
                    "A message to an existing chat goes to the chat's project; leave projectId "
                    "out or give the chat's.",
                    field="projectId",
                )
            return chat, await uow.chats.list_messages(chat.id)
        project_id = await project_to_write(uow, command.user_id, command.project_id)
        personal = project_id == personal_project_id(command.user_id)
        system_prompt = command.system_prompt
        # Private to the caller: never copied into a shared project's chat, where every member
        # would read (and editors change) them as its system prompt; a personal project its
        # owner added members to is shared so.
        if (
            system_prompt is None
            and personal
            and user.has_custom_instructions
            and len(await uow.projects.list_members(project_id)) <= 1
        ):
            # read before the prompt is built (the reply is launched before the chat's INSERT)
            system_prompt = await uow.users.get_custom_instructions(user.id)
        chat = Chat.start(
            id=self._ids.new_id(),
            project_id=project_id,
            user_id=command.user_id,
            first_message=command.message,
            now=now,
            system_prompt=system_prompt,
        )
        return chat, None
