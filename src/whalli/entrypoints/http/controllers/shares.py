"""Shared links to chats: /api/chats/{id}/shares (make, list, revoke) and the public
/api/shared/{token} that anyone with the link reads without signing in."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from whalli.domain.model.chats import MessageRole, MessageStatus
from whalli.domain.model.principal import Principal
from whalli.domain.model.shares import SHARED_PATH, ChatShare
from whalli.domain.services.chats.list_shares import ListChatShares, ListChatSharesHandler
from whalli.domain.services.chats.read_shared_chat import ReadSharedChat, ReadSharedChatHandler
from whalli.domain.services.chats.revoke_share import RevokeChatShare, RevokeChatShareHandler
from whalli.domain.services.chats.share_chat import ShareChat, ShareChatHandler
from whalli.entrypoints.http.paths import root_of
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import PUBLIC


class Share(Schema):
    id: UUID
    created_at: datetime
    created_by: UUID
    message_count: int
    expires_at: datetime | None = None  # left out: until revoked


class ShareCreated(Schema):
    id: UUID
    token: str
    url: str
    created_at: datetime
    message_count: int
    expires_at: datetime | None = None  # left out: until revoked


class ShareCreate(Inbound):
    # When the link stops opening (with a UTC offset, at most a year away); none: until revoked
    expires_at: datetime | None = None


class SharedMessage(Schema):
    role: MessageRole
    content: str
    model: str | None  # no default: always present, null on the user's messages
    created_at: datetime
    status: MessageStatus  # complete, or aborted (stopped) / failed: never why
    # no default: always present; a reasoning model's thinking before its answer, or null
    reasoning: str | None


class SharedChat(Schema):
    title: str
    shared_at: datetime
    messages: list[SharedMessage]
    model: str | None = None  # the model of the last reply shown; left out when none


def _share(share: ChatShare) -> Share:
    return Share(
        id=share.id, created_at=share.created_at, created_by=share.created_by,
        message_count=share.message_count, expires_at=share.expires_at,
    )  # fmt: skip


class ChatShareController(Controller):
    """Owners and editors share a chat and revoke its links (a link's creator may revoke it
    too); every member lists them; a non-member gets 404 as for a missing chat."""

    path = "/api/chats/{chat_id:uuid}/shares"
    tags = ["chats"]

    @post(
        "/",
        summary="Share a snapshot of a chat by a public read-only link (owners and editors)",
        description="The link shows a copy of the messages finished now: never later ones, "
        "nor later edits (a chat over 2,000,000 characters is refused, 422). The token is "
        "in the response only: it is stored as a hash and cannot be shown again. The body is "
        "optional: `expiresAt` makes the link stop opening then (at most a year away). At most "
        "20 live links per chat (422 beyond).",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        share_chat: NamedDependency[ShareChatHandler],
        chat_id: FromPath[UUID],
        data: JSONBody[ShareCreate | None] = None,
    ) -> ShareCreated:
        expires_at = None if data is None else data.expires_at
        command = ShareChat(user_id=principal.user_id, chat_id=chat_id, expires_at=expires_at)
        made = await share_chat.execute(command)
        share = made.share
        return ShareCreated(
            id=share.id, token=made.token,
            url=root_of(request.scope) + SHARED_PATH + made.token,  # under the root
            created_at=share.created_at, message_count=share.message_count,
            expires_at=share.expires_at,
        )  # fmt: skip

    @get("/", summary="A chat's live shared links, newest first (members; no tokens)")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_chat_shares: NamedDependency[ListChatSharesHandler],
        chat_id: FromPath[UUID],
    ) -> list[Share]:
        command = ListChatShares(user_id=principal.user_id, chat_id=chat_id)
        return [_share(s) for s in await list_chat_shares.execute(command)]

    @delete(
        "/{share_id:uuid}",
        summary="Revoke a shared link (owners, editors and its creator); it then answers 404",
    )
    async def revoke(
        self,
        principal: NamedDependency[Principal],
        revoke_chat_share: NamedDependency[RevokeChatShareHandler],
        chat_id: FromPath[UUID],
        share_id: FromPath[UUID],
    ) -> None:
        await revoke_chat_share.execute(
            RevokeChatShare(user_id=principal.user_id, chat_id=chat_id, share_id=share_id)
        )


class SharedChatController(Controller):
    """Public: the token in the link is the only credential."""

    path = SHARED_PATH.rstrip("/")
    tags = ["chats"]
    opt = PUBLIC

    @get(
        "/{token:str}",
        summary="A shared chat snapshot (public, no credentials)",
        description="The title and the shared messages (role, text, model, time) only. An "
        "unknown, revoked or expired link, or one whose chat was deleted, answers 404.",
    )
    async def read(
        self, read_shared_chat: NamedDependency[ReadSharedChatHandler], token: FromPath[str]
    ) -> Response[SharedChat]:
        found = await read_shared_chat.execute(ReadSharedChat(token=token))
        body = SharedChat(
            title=found.title, model=found.model, shared_at=found.shared_at,
            messages=[
                SharedMessage(role=m.role, content=m.content, model=m.model,
                              created_at=m.created_at, status=m.status,
                              reasoning=m.reasoning or None)
                for m in found.messages
            ],
        )  # fmt: skip
        # revocation takes effect at once, and a private link is no search result
        return Response(body, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})
