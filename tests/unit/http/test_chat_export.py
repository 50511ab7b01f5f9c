"""The Markdown export's summary line counts the chat's messages in words a person reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from whalli.domain.model.chats import Chat, Message
from whalli.entrypoints.http.chat_export import chat_markdown

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("count", "said"), [(0, "0 messages"), (1, "1 message"), (2, "2 messages")]
)
def test_the_summary_line_counts_the_messages_singular_for_one(count: int, said: str) -> None:
    chat = Chat.start(
        id=uuid.uuid4(), project_id=uuid.uuid4(), user_id=uuid.uuid4(), first_message="Hi",
        now=NOW,
    )  # fmt: skip
    messages = [
        Message.from_user(id=uuid.uuid4(), chat_id=chat.id, content=f"m{i}", now=NOW)
        for i in range(count)
    ]

    summary = chat_markdown(chat, messages).splitlines()[2]

    assert summary.endswith(f"· {said}*"), summary
