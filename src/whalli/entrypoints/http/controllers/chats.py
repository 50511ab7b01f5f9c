"""Existing chats: /api/chats (list, search, read, export, rename, fork, delete). Starting a
chat and streaming its replies are other routes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from whalli.domain.model import chats as model
from whalli.domain.model.feedback import Feedback, Rating
from whalli.domain.model.filenames import content_disposition, download_name
from whalli.domain.model.principal import Principal
from whalli.domain.services.chats.delete_chat import DeleteChat, DeleteChatHandler
from whalli.domain.services.chats.fork_chat import ForkChat, ForkChatHandler
from whalli.domain.services.chats.get_chat import ChatWithMessages, GetChat, GetChatHandler
from whalli.domain.services.chats.list_chats import DEFAULT_PAGE_SIZE, ListChats, ListChatsHandler
from whalli.domain.services.chats.rate_reply import RateReply, RateReplyHandler
from whalli.domain.services.chats.reply_versions import (
    ListReplyVersions,
    ListReplyVersionsHandler,
    ReplyVersions,
    RestoreReplyVersion,
    RestoreReplyVersionHandler,
)
from whalli.domain.services.chats.search_chats import DEFAULT_LIMIT, SearchChats, SearchChatsHandler
from whalli.domain.services.chats.update_chat import UpdateChat, UpdateChatHandler
from whalli.entrypoints.http.chat_export import chat_markdown
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.ports.chat_search import ChatSearchHit


class Chat(Schema):
    id: UUID
    project_id: UUID
    title: str
    created_at: datetime
    updated_at: datetime
    pinned: bool
    archived: bool
    pinned_at: datetime | None  # no default: always present, null when not pinned
    archived_at: datetime | None  # no default: always present, null when not archived


class InstructedChat(Chat):
    """A chat with its system prompt (not in lists: it may be long)."""

    system_prompt: str | None  # no default: always present, null when the chat has none


class ChatPage(Schema):
    items: list[Chat]
    next_cursor: str | None  # no default: always present, null on the last page


class Usage(Schema):
    prompt_tokens: int
    completion_tokens: int
    # of the prompt tokens, read from / written to the provider's prompt cache
    cached_prompt_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int  # of the completion tokens, the model's hidden reasoning


class FeedbackOut(Schema):
    rating: Rating
    comment: str | None
    updated_at: datetime


class FeedbackIn(Inbound):
    rating: Rating
    comment: str | None = None


class Message(Schema):
    id: UUID
    role: model.MessageRole
    content: str
    status: model.MessageStatus
    model: str | None
    provider: str | None
    usage: Usage
    cost_usd: float
    cached: bool
    finish_reason: str | None
    ttft_ms: int | None
    total_ms: int | None
    attachment_ids: list[UUID]
    error: str | None
    # a reasoning model's thinking before its answer (streamed as `reasoning` events); null
    # when it streamed none
    reasoning: str | None
    created_at: datetime
    # no default: always present; for a reply still being generated, the caller's reader pass
    # for its session (GET /api/chat/stream?sessionId=, POST /api/chat/sessions/{it}/stop),
    # null once it finished or its session expired
    session_id: str | None
    # no default: always present; the caller's own rating of this reply, or null
    feedback: FeedbackOut | None
    # no default: always present; how many earlier versions of this reply are kept (the
    # replies regenerations replaced: GET .../messages/{id}/versions), 0 for most
    earlier_versions: int


class ChatDetail(InstructedChat):
    messages: list[Message]


class ReplyVersionOut(Message):
    """An earlier version of a reply (its sessionId always null, earlierVersions 0)."""

    question: str  # the user's message it answered, as it was then
    replaced_at: datetime


class ReplyVersionList(Schema):
    items: list[ReplyVersionOut]  # in the order they were generated


class ChatUpdate(Inbound, omit_defaults=True):
    title: str | msgspec.UnsetType = msgspec.UNSET
    # null (or blank text) removes it
    system_prompt: str | msgspec.UnsetType | None = msgspec.UNSET
    # neither moves the chat in the list; archiving unpins; an archived chat cannot be pinned
    pinned: bool | msgspec.UnsetType = msgspec.UNSET
    archived: bool | msgspec.UnsetType = msgspec.UNSET


class ForkIn(Inbound):
    message_id: UUID | None = None  # the last message copied; none: the whole conversation
    project_id: UUID | None = None  # none: the caller's personal project
    title: str | None = None  # none: the chat's


class SearchHit(Schema):
    chat_id: UUID
    project_id: UUID
    title: str
    snippet: str
    updated_at: datetime
    pinned: bool
    archived: bool


def _chat(chat: model.Chat) -> Chat:
    return Chat(
        id=chat.id, project_id=chat.project_id, title=chat.title, created_at=chat.created_at,
        updated_at=chat.updated_at, pinned=chat.pinned, archived=chat.archived,
        pinned_at=chat.pinned_at, archived_at=chat.archived_at,
    )  # fmt: skip


def _detail(found: ChatWithMessages, sessions: Mapping[UUID, str]) -> ChatDetail:
    """A chat read, with its messages, the caller's ratings and the given reader passes."""
    messages = [
        _message(
            m, sessions.get(m.id), found.feedback.get(m.id), found.earlier_versions.get(m.id, 0)
        )
        for m in found.messages
    ]
    return ChatDetail(
        **msgspec.structs.asdict(_chat(found.chat)), system_prompt=found.chat.system_prompt,
        messages=messages,
    )  # fmt: skip


def _feedback(f: Feedback | None) -> FeedbackOut | None:
    if f is None:
        return None
    return FeedbackOut(rating=f.rating, comment=f.comment, updated_at=f.updated_at)


def _message(
    m: model.Message, session_id: str | None, feedback: Feedback | None, earlier_versions: int
) -> Message:
    usage = Usage(
        prompt_tokens=m.usage.prompt_tokens, completion_tokens=m.usage.completion_tokens,
        cached_prompt_tokens=m.usage.cached_prompt_tokens,
        cache_write_tokens=m.usage.cache_write_tokens,
        reasoning_tokens=m.usage.reasoning_tokens,
    )  # fmt: skip
    return Message(
        id=m.id, role=m.role, content=m.content, status=m.status, model=m.model,
        provider=m.provider, usage=usage, cost_usd=m.cost_usd, cached=m.cached,
        finish_reason=m.finish_reason, ttft_ms=m.ttft_ms, total_ms=m.total_ms,
        attachment_ids=list(m.attachment_ids), error=m.error, reasoning=m.reasoning or None,
        created_at=m.created_at, session_id=session_id, feedback=_feedback(feedback),
        earlier_versions=earlier_versions,
    )  # fmt: skip


def _versions(found: ReplyVersions) -> ReplyVersionList:
    items = []
    for v in found.versions:
        shown = _message(v.reply, None, found.feedback.get(v.reply.id), 0)
        items.append(ReplyVersionOut(
            **msgspec.structs.asdict(shown), question=v.asked, replaced_at=v.replaced_at
        ))  # fmt: skip
    return ReplyVersionList(items=items)


def _hit(hit: ChatSearchHit) -> SearchHit:
    return SearchHit(
        chat_id=hit.chat_id, project_id=hit.project_id, title=hit.title, snippet=hit.snippet,
        updated_at=hit.updated_at, pinned=hit.pinned, archived=hit.archived,
    )  # fmt: skip


class ChatController(Controller):
    """A chat is as visible as its project: every member may read, owners and editors rename and
    delete (viewers 403), and anyone else gets 404 exactly as for an id that does not exist."""

    path = "/api/chats"
    tags = ["chats"]

    @get(
        "/",
        summary="A project's chats, newest first (cursor pagination)",
        description="Archived chats are left out unless `archived=true` (then only they are "
        "listed); `pinned=true` lists only the pinned chats, `pinned=false` only the others. "
        "Pinning and archiving do not change a chat's place (`updatedAt`).",
    )
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_chats: NamedDependency[ListChatsHandler],
        project_id: Annotated[
            UUID | None,
            QueryParameter(name="projectId", description="Default: the personal project"),
        ] = None,
        limit: Annotated[int, QueryParameter(description="1 to 100")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, QueryParameter(description="nextCursor of the previous page")
        ] = None,
        archived: Annotated[
            bool, QueryParameter(description="true: only archived chats; false: none of them")
        ] = False,
        pinned: Annotated[
            bool | None, QueryParameter(description="true: only pinned chats; false: unpinned")
        ] = None,
    ) -> ChatPage:
        command = ListChats(
            user_id=principal.user_id, project_id=project_id, limit=limit, cursor=cursor,
            archived=archived, pinned=pinned,
        )  # fmt: skip
        page = await list_chats.execute(command)
        return ChatPage(items=[_chat(c) for c in page.items], next_cursor=page.next_cursor)

    @get("/search", summary="Full-text search over the chats the caller can read, best first")
    async def search(
        self,
        principal: NamedDependency[Principal],
        search_chats: NamedDependency[SearchChatsHandler],
        q: Annotated[str, QueryParameter(description="Words to find, any order")] = "",
        limit: Annotated[int, QueryParameter(description="1 to 100")] = DEFAULT_LIMIT,
    ) -> list[SearchHit]:
        hits = await search_chats.execute(SearchChats(user_id=principal.user_id, q=q, limit=limit))
        return [_hit(h) for h in hits]

    @get(
        "/{chat_id:uuid}",
        summary="One chat with its messages, oldest first (members)",
        description=(
            "An assistant message still being generated (status pending or streaming) carries "
            "the sessionId to stream it from, GET /api/chat/stream?sessionId=, so another "
            "device or tab attaches to the live reply (resuming with Last-Event-ID); sessionId "
            "is null on every other message, and once the reply finished or its session expired."
        ),
    )
    async def read(
        self,
        principal: NamedDependency[Principal],
        get_chat: NamedDependency[GetChatHandler],
        chat_id: FromPath[UUID],
    ) -> ChatDetail:
        found = await get_chat.execute(
            GetChat(user_id=principal.user_id, chat_id=chat_id, credential=principal.credential)
        )
        return _detail(found, found.live_sessions)

    @get(
        "/{chat_id:uuid}/export",
        summary="A chat as a file to download: Markdown (default) or JSON (members)",
        description="`format=markdown`: the title, the system prompt, then each message under "
        "its author and time. `format=json`: the body of `GET /api/chats/{id}` (without "
        "session ids). Answered as an attachment named after the chat's title.",
    )
    async def export(
        self,
        principal: NamedDependency[Principal],
        get_chat: NamedDependency[GetChatHandler],
        chat_id: FromPath[UUID],
        export_format: Annotated[
            Literal["markdown", "json"], QueryParameter(name="format")
        ] = "markdown",
    ) -> Response[bytes]:
        found = await get_chat.execute(
            GetChat(
                user_id=principal.user_id, chat_id=chat_id, credential=principal.credential,
                file_names=export_format == "markdown",
            )
        )  # fmt: skip
        chat = found.chat
        if export_format == "json":  # as read, without reader passes (a file outlives them)
            detail = _detail(found, sessions={})
            content, media, extension = msgspec.json.encode(detail), "application/json", "json"
        else:
            content = chat_markdown(chat, found.messages, found.file_names).encode()
            media, extension = "text/markdown", "md"  # (Litestar adds the charset)
        disposition = content_disposition(download_name(chat.title, extension))
        return Response(content, media_type=media, headers={"Content-Disposition": disposition})

    @put(
        "/{chat_id:uuid}/messages/{message_id:uuid}/feedback",
        summary="Rate a reply: thumbs up or down, and a comment (readers; each their own)",
        description="Rating again replaces it. The caller's rating comes with the reply in "
        "`GET /api/chats/{id}`. A reply still being generated answers 409.",
    )
    async def rate(
        self,
        principal: NamedDependency[Principal],
        rate_reply: NamedDependency[RateReplyHandler],
        chat_id: FromPath[UUID],
        message_id: FromPath[UUID],
        data: JSONBody[FeedbackIn],
    ) -> FeedbackOut:
        command = RateReply(
            user_id=principal.user_id, chat_id=chat_id, message_id=message_id,
            rating=data.rating, comment=data.comment,
        )  # fmt: skip
        given = _feedback(await rate_reply.execute(command))
        assert given is not None  # a rating was given
        return given

    @delete(
        "/{chat_id:uuid}/messages/{message_id:uuid}/feedback",
        summary="Take back one's rating of a reply",
    )
    async def unrate(
        self,
        principal: NamedDependency[Principal],
        rate_reply: NamedDependency[RateReplyHandler],
        chat_id: FromPath[UUID],
        message_id: FromPath[UUID],
    ) -> None:
        await rate_reply.execute(RateReply(
            user_id=principal.user_id, chat_id=chat_id, message_id=message_id, rating=None,
        ))  # fmt: skip

    @get(
        "/{chat_id:uuid}/messages/{message_id:uuid}/versions",
        summary="A reply's earlier versions: the replies regenerations replaced (members)",
        description="`message_id` is a reply of the chat (as `GET /api/chats/{id}` lists it; "
        "its `earlierVersions` says how many there are). Each version comes in the order they "
        "were generated, with the question's text it answered and the caller's rating.",
    )
    async def versions(
        self,
        principal: NamedDependency[Principal],
        list_reply_versions: NamedDependency[ListReplyVersionsHandler],
        chat_id: FromPath[UUID],
        message_id: FromPath[UUID],
    ) -> ReplyVersionList:
        command = ListReplyVersions(
            user_id=principal.user_id, chat_id=chat_id, message_id=message_id
        )
        return _versions(await list_reply_versions.execute(command))

    @post(
        "/{chat_id:uuid}/messages/{message_id:uuid}/restore",
        status_code=200,
        summary="Make an earlier version the chat's last reply again (owners and editors)",
        description="`message_id` is an earlier version of the chat's last reply; the reply it "
        "replaces becomes an earlier version in turn, and the question takes back the text "
        "that version answered. Answers the chat as `GET /api/chats/{id}` reads it. 409 "
        "`not_the_last_reply` for a version of an earlier reply, `reply_in_progress` while the "
        "last reply is being generated.",
    )
    async def restore(
        self,
        principal: NamedDependency[Principal],
        restore_reply_version: NamedDependency[RestoreReplyVersionHandler],
        get_chat: NamedDependency[GetChatHandler],
        chat_id: FromPath[UUID],
        message_id: FromPath[UUID],
    ) -> ChatDetail:
        await restore_reply_version.execute(RestoreReplyVersion(
            user_id=principal.user_id, chat_id=chat_id, version_id=message_id
        ))  # fmt: skip
        found = await get_chat.execute(
            GetChat(user_id=principal.user_id, chat_id=chat_id, credential=principal.credential)
        )
        return _detail(found, found.live_sessions)

    @patch(
        "/{chat_id:uuid}",
        summary="Rename a chat, change its system prompt, pin or archive it (owners and editors)",
        description="`pinned` and `archived` (booleans) do not move the chat in the list. "
        "Archiving unpins; pinning an archived chat is 422 unless `archived: false` comes "
        "with it. A new message in an archived chat (POST /api/chat/start) unarchives it.",
    )
    async def update(
        self,
        principal: NamedDependency[Principal],
        update_chat: NamedDependency[UpdateChatHandler],
        chat_id: FromPath[UUID],
        data: JSONBody[ChatUpdate],
    ) -> InstructedChat:
        title = None if isinstance(data.title, msgspec.UnsetType) else data.title
        pinned = None if isinstance(data.pinned, msgspec.UnsetType) else data.pinned
        archived = None if isinstance(data.archived, msgspec.UnsetType) else data.archived
        command = UpdateChat(
            user_id=principal.user_id, chat_id=chat_id, title=title,
            system_prompt=data.system_prompt, pinned=pinned, archived=archived,
        )  # fmt: skip
        chat = await update_chat.execute(command)
        return InstructedChat(
            **msgspec.structs.asdict(_chat(chat)), system_prompt=chat.system_prompt
        )

    @post(
        "/{chat_id:uuid}/fork",
        summary="Fork a chat: a new chat with a copy of its conversation up to a message (readers)",
        description="Copies the finished messages up to and including `messageId` (all of "
        "them when left out; a reply still being generated: 409) and the system prompt into a "
        "new chat of the caller's, in `projectId` (owners and editors) or their personal "
        "project, titled as the chat or `title`. Go on from there with `POST /api/chat/start` "
        "or `/api/chat/regenerate`; the chat forked from is not changed. Feedback, share "
        "links, pin and archive are not copied; attachment links only within one project. The "
        "body is optional. Answers the new chat as `GET /api/chats/{id}` does.",
    )
    async def fork(
        self,
        principal: NamedDependency[Principal],
        fork_chat: NamedDependency[ForkChatHandler],
        chat_id: FromPath[UUID],
        data: JSONBody[ForkIn | None] = None,
    ) -> ChatDetail:
        given = data or ForkIn()
        command = ForkChat(
            user_id=principal.user_id, chat_id=chat_id, message_id=given.message_id,
            project_id=given.project_id, title=given.title,
        )  # fmt: skip
        return _detail(await fork_chat.execute(command), sessions={})

    @delete("/{chat_id:uuid}", summary="Delete a chat and its messages (owners and editors)")
    async def remove(
        self,
        principal: NamedDependency[Principal],
        delete_chat: NamedDependency[DeleteChatHandler],
        chat_id: FromPath[UUID],
    ) -> None:
        await delete_chat.execute(DeleteChat(user_id=principal.user_id, chat_id=chat_id))
