"""What a fork copies of a chat's messages (domain.model.chat_forks)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from whalli.domain.model.chat_forks import forked_messages
from whalli.domain.model.chats import Message, MessageRole, MessageStatus, TokenUsage
from whalli.domain.model.errors import InvalidInput, ReplyInProgress

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SOURCE, FORK = uuid.uuid4(), uuid.uuid4()
FILE = uuid.uuid4()


def msg(n: int, role: MessageRole, content: str, **fields: object) -> Message:
    at = T0 + timedelta(minutes=n)
    return Message(
        id=uuid.uuid4(), chat_id=SOURCE, role=role, content=content, created_at=at,
        updated_at=at + timedelta(seconds=1), **fields,  # type: ignore[arg-type]
    )  # fmt: skip


U, A = MessageRole.USER, MessageRole.ASSISTANT
CHAT = [
    msg(0, U, "q1", attachment_ids=(FILE,)),
    msg(
        1,
        A,
        "a1",
        model="openai/gpt-4o",
        provider="openai",
        usage=TokenUsage(prompt_tokens=5, completion_tokens=2),
        cost_usd=0.01,
        finish_reason="stop",
    ),
    msg(2, U, "q2"),
    msg(3, A, "", status=MessageStatus.FAILED, error="provider_error"),  # failed, no text
    msg(4, U, "q3"),
    msg(5, A, "partial", status=MessageStatus.ABORTED),
]


def fork(up_to: uuid.UUID | None, *, keep: bool = True) -> list[Message]:
    ids = (uuid.UUID(int=n) for n in itertools.count(1))
    return forked_messages(
        CHAT, up_to=up_to, chat_id=FORK, new_id=lambda: next(ids), keep_attachments=keep
    )


def test_the_copies_keep_everything_but_their_ids_and_chat() -> None:
    copies = fork(CHAT[1].id)

    assert [c.id for c in copies] == [uuid.UUID(int=1), uuid.UUID(int=2)]
    assert {c.chat_id for c in copies} == {FORK}
    for copy, original in zip(copies, CHAT, strict=False):
        fields = set(Message.__struct_fields__) - {"id", "chat_id"}
        assert {f: getattr(copy, f) for f in fields} == {f: getattr(original, f) for f in fields}


def test_a_whole_fork_leaves_out_failed_replies_without_text_and_keeps_stopped_ones() -> None:
    assert [c.content for c in fork(None)] == ["q1", "a1", "q2", "q3", "partial"]


def test_attachment_links_go_only_where_they_are_kept() -> None:
    assert fork(None, keep=True)[0].attachment_ids == (FILE,)
    assert fork(None, keep=False)[0].attachment_ids == ()


def test_a_reply_still_being_generated_cannot_be_forked_at_and_is_left_out_of_a_whole_fork() -> (
    None
):
    generating = [*CHAT, msg(6, U, "q4"), msg(7, A, "so far", status=MessageStatus.STREAMING)]
    ids = (uuid.uuid4() for _ in itertools.count())

    with pytest.raises(ReplyInProgress, match="still being generated"):
        forked_messages(generating, up_to=generating[-1].id, chat_id=FORK,
                        new_id=lambda: next(ids), keep_attachments=True)  # fmt: skip
    whole = forked_messages(
        generating, up_to=None, chat_id=FORK, new_id=lambda: next(ids), keep_attachments=True
    )
    assert [c.content for c in whole][-2:] == ["partial", "q4"]


def test_a_message_of_another_chat_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a message of this chat") as caught:
        fork(uuid.uuid4())
    assert caught.value.details["field"] == "messageId"


def test_forking_at_a_failed_reply_without_text_copies_what_came_before_it() -> None:
    assert [c.content for c in fork(CHAT[3].id)] == ["q1", "a1", "q2"]
