"""Chat streaming: start a reply, stream it over SSE (resumable), stop it."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import (
    MESSAGE_MAX,
)
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.principal import Principal
from whalli.domain.model.replies import (
    parse_event_id,
)
from whalli.domain.services.auth.authenticate import Authenticate
from whalli.domain.services.chat.attach_stream import AttachStream
from whalli.domain.services.chat.context import PreparedReply
from whalli.domain.services.chat.opening import LaunchReply
from whalli.domain.services.chat.regenerate_reply import RegenerateReply
from whalli.domain.services.chat.start_chat import StartChat
from whalli.domain.services.chat.stop_generation import StopGeneration
from whalli.domain.services.chat.voice import NO_MESSAGE
from whalli.entrypoints.http.admission import Turn
from whalli.entrypoints.http.deps import AppContainer
from whalli.entrypoints.http.lean_stream import LeanStream
from whalli.entrypoints.http.params_body import ParamsBody, cleared_params, generation_params
from whalli.entrypoints.http.paths import root_of
from whalli.entrypoints.http.reply_events import (
    RETRY,
    SSE_HEADERS,
    reply_frames,
    wants_events,
)
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY, PUBLIC, credential_from
from whalli.entrypoints.http.sse import json_event


class ChatStartBody(Inbound):
    # left out: a voice message, the transcript of its attached recordings (audio files)
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=MESSAGE_MAX)] | None = None
    # one of the two: the model, or a preset of the caller's giving it (with more)
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    preset_id: UUID | None = None
    chat_id: UUID | None = None
    project_id: UUID | None = None
    attachment_ids: Annotated[list[UUID], msgspec.Meta(max_length=10)] = []
    params: ParamsBody | None = None
    cache: bool = True
    # a new chat's instructions (sent first with every reply in it); not with chatId
    system_prompt: str | None = None


class RegenerateBody(Inbound):
    chat_id: UUID
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=MESSAGE_MAX)] | None = None
    params: ParamsBody | None = None
    preset_id: UUID | None = None


class ChatStarted(Schema):
    session_id: str
    chat_id: UUID
    message_id: UUID
    expires_at: str
    stream_url: str


class ReplyRegenerated(ChatStarted):
    replaced_message_id: UUID | None  # no default: always present, null when none was replaced


Answer = TypeVar("Answer", bound=ChatStarted)
NO_USER = UUID(int=0)  # a command's caller until ``started`` sets it


def _container(request: Request[Any, Any, Any]) -> AppContainer:
    container: AppContainer = request.app.state[CONTAINER_STATE_KEY]
    return container


class ChatStreamController(Controller):
    path = "/api/chat"
    tags = ["chat"]

    @post(
        "/start", status_code=201, summary="Save the message and open a reply session",
        description="Answers the session as JSON. With `Accept: text/event-stream` it answers "
        "the reply itself as Server-Sent Events instead (one request instead of two, for "
        "clients that can read a POST's body as it comes, like `fetch`): first a `session` "
        "event holding the same fields as the JSON answer, then the events of "
        "`GET /api/chat/stream`. The session id resumes it there with `Last-Event-ID`.",
    )  # fmt: skip
    async def start(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal],
        data: JSONBody[ChatStartBody],
    ) -> ChatStarted | LeanStream:  # fmt: skip
        container = _container(request)
        command = start_command(data)
        root = root_of(request.scope)
        async with start_turn(container, command):  # a burst: a few at a time (admission.py)
            answer, session = await started(container, command, principal, root)
        return await _answer(request, container, session, answer)

    @post(
        "/regenerate", status_code=201, summary="Answer the chat's last message again",
        description="Replaces the chat's last reply (finished: complete, aborted or failed) "
        "with a new one to the same message (edited to `message` first, when given), by "
        "`model` or the replaced reply's model (or `presetId`'s: the caller's preset gives its "
        "model unless `model` is named, and the parameters `params` leaves out). By the "
        "replaced reply's model, the parameters it was asked with fill in what `params` leaves "
        "out; a parameter set to null is taken from neither (the provider's default). Never "
        "from the prompt cache. Answers like "
        "`/api/chat/start` (JSON, or the reply as events with `Accept: text/event-stream`), "
        "plus `replacedMessageId`, the reply replaced (kept as an earlier version). A chat "
        "ending with a message that has no reply (a fork at a question, an import) gets one, "
        "by the `model` named, and `replacedMessageId` null. 409 while a reply is still "
        "being generated.",
    )  # fmt: skip
    async def regenerate(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal],
        data: JSONBody[RegenerateBody],
    ) -> ReplyRegenerated | LeanStream:  # fmt: skip
        container = _container(request)
        async with container.start_gate.turn():  # as a start's (admission.py)
            regenerated = await (await container.regenerate_reply()).execute(
                RegenerateReply(
                    user_id=principal.user_id, user=principal.user,
                    user_read_at=principal.read_at, credential=principal.credential,
                    chat_id=data.chat_id, model=data.model, message=data.message,
                    params=generation_params(data.params), cleared=cleared_params(data.params),
                    preset_id=data.preset_id,
                ),
                await _launcher(container),
            )  # fmt: skip
        answer = ReplyRegenerated(
            **_opened(regenerated.session, regenerated.message_id, root_of(request.scope)),
            replaced_message_id=regenerated.replaced_message_id,
        )
        return await _answer(request, container, regenerated.session, answer)

    @get(
        "/stream", opt={**PUBLIC, "rate_limit": False},
        summary="The reply as Server-Sent Events (token, done, error); resumable by Last-Event-ID",
        description="Resuming after the final event (its id as `Last-Event-ID`) answers 204 No "
        "Content, which stops a browser's EventSource from reconnecting.",
        responses={204: ResponseSpec(None, description="The reply had ended: stop reconnecting.")},
    )  # fmt: skip
    async def stream(
        self, request: Request[Any, Any, Any],
        session_id: Annotated[str, QueryParameter(name="sessionId", max_length=256)],
        last_event_id: Annotated[str | None, QueryParameter(name="lastEventId")] = None,
    ) -> Response[Any]:  # fmt: skip
        """A client resuming after the final event gets 204: an ``EventSource`` reconnects
        whenever a stream closes, and a 204 is what tells it to stop."""
        container = _container(request)
        user_id = await _optional_user(request, container)
        session = await (await container.attach_stream()).execute(
            AttachStream(session_id=session_id, user_id=user_id)
        )
        reader = await container.read_reply()
        after = request.headers.get("last-event-id") or last_event_id
        if after is not None:
            parse_event_id(after)  # a 422 now, not an error inside a 200 stream
            if await reader.ended_at(session.id, after):
                return Response(content=b"", status_code=204)
        return LeanStream(reply_frames(reader, session.id, after, RETRY), headers=SSE_HEADERS)

    @post("/sessions/{session_id:str}/stop", status_code=202, summary="Stop generating a reply")
    async def stop(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal],
        session_id: FromPath[str],
    ) -> dict[str, str]:  # fmt: skip
        handler = await _container(request).stop_generation()
        await handler.execute(StopGeneration(session_id=session_id, user_id=principal.user_id))
        return {"status": "stopping"}


def start_command(data: ChatStartBody) -> StartChat:
    """The use case's command, its caller's fields not yet set (``started`` sets them);
    ``InvalidInput`` for a body it refuses. Shared with the route below Litestar
    (start_route.py), which builds it before authenticating."""
    return StartChat(
        user_id=NO_USER, model=data.model, message=_message(data),
        chat_id=data.chat_id, project_id=data.project_id, preset_id=data.preset_id,
        attachment_ids=tuple(data.attachment_ids), use_cache=data.cache,
        system_prompt=data.system_prompt, params=generation_params(data.params),
    )  # fmt: skip


def start_turn(container: AppContainer, command: StartChat) -> Turn:
    """The start's turn at the admission gate (admission.py). One naming files may wait for
    their extraction (``chat_attachment_wait_s``): it goes in at once, holding no slot, so that
    it holds nobody up while it waits."""
    return container.start_gate.turn(queue=not command.attachment_ids)


async def started(
    container: AppContainer, command: StartChat, principal: Principal, root: str
) -> tuple[ChatStarted, ChatSession]:
    """``command`` run as ``principal``'s: the JSON answer, and the session it opened (its
    stream's URL under ``root``, the app's root path)."""
    command = msgspec.structs.replace(
        command, user_id=principal.user_id, user=principal.user, user_read_at=principal.read_at,
        credential=principal.credential,
    )  # fmt: skip
    opened = await (await container.start_chat()).execute(command, await _launcher(container))
    return ChatStarted(**_opened(opened.session, opened.message_id, root)), opened.session


def _message(data: ChatStartBody) -> str:
    """The message's text; empty for a voice message (its recordings attached, no text)."""
    if data.message is None and not data.attachment_ids:
        raise InvalidInput(NO_MESSAGE, field="message")
    return data.message or ""


def _opened(session: ChatSession, message_id: UUID, root: str) -> dict[str, Any]:
    """What every answer opening a reply session says (``ChatStarted``'s fields); the stream's
    URL under ``root``, the app's root path (served under one, its clients reach it there)."""
    return {
        "session_id": session.id, "chat_id": session.chat_id, "message_id": message_id,
        "expires_at": session.expires_at.isoformat(),
        "stream_url": f"{root}/api/chat/stream?sessionId={session.id}",
    }  # fmt: skip


async def _launcher(container: AppContainer) -> LaunchReply:
    """Launches a reply's generation in the background, as the use case says when."""
    generator = await container.generate_reply()

    def launch(session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]) -> None:
        # (a partial, not a closure: no coroutine frame of its own under every reply)
        generate = functools.partial(generator.execute, session, prepared, saved)
        task = container.generations.launch(session.id, generate)
        saved.add_done_callback(lambda done: task.cancel() if done.cancelled() else None)

    return launch


async def _answer(
    request: Request[Any, Any, Any], container: AppContainer, session: ChatSession,
    answer: Answer,
) -> Answer | LeanStream:  # fmt: skip
    """The session as JSON, or (``Accept: text/event-stream``) the reply itself as events,
    after a ``session`` event holding the JSON answer."""
    if not wants_events(request):
        return answer
    head = RETRY + json_event("session", answer)
    frames = reply_frames(await container.read_reply(), session.id, None, head)
    return LeanStream(frames, status_code=201, headers=SSE_HEADERS)


async def _optional_user(request: Request[Any, Any, Any], container: AppContainer) -> UUID | None:
    """The stream route is public (EventSource sends no headers); a credential, when sent, is
    checked like anywhere else and narrows who may attach."""
    credential = credential_from(request.headers)
    if credential is None:
        return None
    principal = await (await container.authenticate()).execute(Authenticate(credential=credential))
    return principal.user_id
