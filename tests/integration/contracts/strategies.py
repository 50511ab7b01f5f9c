"""Hypothesis strategies for valid entities as they are stored (text without NUL bytes)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import strategies as st

from whalli.domain.model.chats import Message, MessageRole, MessageStatus, TokenUsage
from whalli.domain.model.users import Plan, Role, User

# A tool turn exists only in prompts sent through /v1: the messages table refuses the role.
STORED_ROLES = [role for role in MessageRole if role is not MessageRole.TOOL]

# Postgres text cannot hold NUL; everything else (any other code point) must round-trip.
_chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
texts = st.text(_chars, max_size=200)
optional_texts = st.none() | texts
instants = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
counts = st.integers(min_value=0, max_value=2**53)


@st.composite
def users(draw: st.DrawFn) -> User:
    local = draw(st.from_regex(r"[a-z0-9._+-]{0,20}", fullmatch=True))
    user_id = uuid.uuid4()
    return User(
        id=user_id, email=f"{local}{user_id.hex}@example.org", name=draw(texts),
        password_hash=draw(optional_texts), role=draw(st.sampled_from(Role)),
        plan=draw(st.sampled_from(Plan)), disabled=draw(st.booleans()),
        email_verified=draw(st.booleans()), created_at=draw(instants),
        updated_at=draw(instants),
    )  # fmt: skip


@st.composite
def messages(draw: st.DrawFn, chat_id: uuid.UUID) -> Message:
    return Message(
        id=uuid.uuid4(), chat_id=chat_id, role=draw(st.sampled_from(STORED_ROLES)),
        content=draw(st.text(_chars, max_size=2000)),
        status=draw(st.sampled_from(MessageStatus)), model=draw(optional_texts),
        provider=draw(optional_texts),
        usage=TokenUsage(prompt_tokens=draw(counts), completion_tokens=draw(counts)),
        cost_usd=draw(st.floats(allow_nan=False, allow_infinity=False)),
        cached=draw(st.booleans()), finish_reason=draw(optional_texts),
        ttft_ms=draw(st.none() | counts), total_ms=draw(st.none() | counts),
        attachment_ids=tuple(draw(st.lists(st.uuids(), max_size=3))),
        error=draw(optional_texts), created_at=draw(instants), updated_at=draw(instants),
    )  # fmt: skip
