"""Hypothesis properties of the domain model's invariants."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from whalli.domain.model.attachments import Attachment, AttachmentStatus, ExtractionResult
from whalli.domain.model.chats import (
    TITLE_MAX,
    Message,
    MessageStatus,
    TokenUsage,
    clean_name,
    title_from,
    visible_words,
)
from whalli.domain.model.errors import InvalidEmail, InvalidInput, InvalidStateTransition
from whalli.domain.model.jobs import (
    ExtractAttachment,
    Job,
    Ping,
    RunSearchSubscription,
    TitleChat,
    TranscribeAudio,
    decode_job,
    encode_job,
)
from whalli.domain.model.projects import MemberRole
from whalli.domain.model.searches import MAX_INTERVAL, MIN_INTERVAL, SearchSubscription
from whalli.domain.model.users import Plan, normalize_email

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
ROLES_BY_POWER = [MemberRole.VIEWER, MemberRole.EDITOR, MemberRole.OWNER]


@given(st.sampled_from(Plan), st.sampled_from(Plan))
def test_a_plan_includes_another_exactly_when_it_ranks_at_least_as_high(a: Plan, b: Plan) -> None:
    assert a.includes(b) == (a.rank >= b.rank)
    assert a.includes(a)
    assert a.includes(b) or b.includes(a)


@given(st.sampled_from(Plan), st.sampled_from(Plan), st.sampled_from(Plan))
def test_plan_inclusion_is_transitive(a: Plan, b: Plan, c: Plan) -> None:
    if a.includes(b) and b.includes(c):
        assert a.includes(c)


def test_plans_are_ordered_free_pro_enterprise() -> None:
    assert Plan.ENTERPRISE.includes(Plan.PRO)
    assert Plan.PRO.includes(Plan.FREE)
    assert not Plan.FREE.includes(Plan.PRO)
    assert not Plan.PRO.includes(Plan.ENTERPRISE)


@given(st.sampled_from(ROLES_BY_POWER), st.sampled_from(ROLES_BY_POWER))
def test_a_stronger_role_can_do_everything_a_weaker_one_can(
    weaker: MemberRole, stronger: MemberRole
) -> None:
    assume(ROLES_BY_POWER.index(weaker) <= ROLES_BY_POWER.index(stronger))
    for permission in (MemberRole.can_read, MemberRole.can_write, MemberRole.can_manage):
        assert permission(stronger) or not permission(weaker)


def test_only_owners_manage_and_viewers_only_read() -> None:
    assert [r.can_manage() for r in ROLES_BY_POWER] == [False, False, True]
    assert [r.can_write() for r in ROLES_BY_POWER] == [False, True, True]
    assert all(r.can_read() for r in ROLES_BY_POWER)


def an_attachment(now: datetime) -> Attachment:
    project_id, attachment_id = uuid.uuid4(), uuid.uuid4()
    return Attachment(
        id=attachment_id, project_id=project_id, user_id=uuid.uuid4(),
        object_key=Attachment.key_for(project_id, attachment_id), filename="a.pdf",
        content_type="application/pdf", size_bytes=1, sha256="0" * 64,
        created_at=now, updated_at=now,
    )  # fmt: skip


@given(st.lists(st.sampled_from(["start", "complete", "fail"]), max_size=8), instants)
def test_an_attachment_never_leaves_a_final_status(steps: list[str], now: datetime) -> None:
    attachment = an_attachment(now)
    final: AttachmentStatus | None = None
    result = ExtractionResult(text="x", method="text")
    for step in steps:
        before = attachment.status
        try:
            if step == "start":
                attachment.start_processing(now)
            elif step == "complete":
                attachment.complete(result, now)
            else:
                attachment.fail("broken", now)
        except InvalidStateTransition:
            assert attachment.status is before
        if final is not None:
            assert attachment.status is final
        if attachment.is_final:
            final = attachment.status
    if attachment.status is AttachmentStatus.DONE:
        assert attachment.extraction == result


@given(st.sampled_from([s for s in MessageStatus if s.is_final]), st.sampled_from(MessageStatus))
def test_a_reply_finishes_only_once(first: MessageStatus, second: MessageStatus) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=uuid.uuid4(), model="m", provider="p", now=now
    )
    reply.finish(status=first, content="first", usage=TokenUsage(prompt_tokens=1), now=now)

    with pytest.raises(InvalidStateTransition, match="already final"):
        reply.finish(status=second, content="second", usage=TokenUsage(), now=now)
    assert (reply.status, reply.content) == (first, "first")


@given(st.sampled_from([s for s in MessageStatus if not s.is_final]))
def test_a_reply_cannot_finish_in_a_status_that_is_not_final(status: MessageStatus) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=uuid.uuid4(), model="m", provider="p", now=now
    )
    with pytest.raises(InvalidStateTransition, match="only finish in a final status"):
        reply.finish(status=status, content="x", usage=TokenUsage(), now=now)


odd_addresses = st.builds(
    "{}@{}.{}".format, st.text(max_size=10), st.text(min_size=1, max_size=10), st.text(max_size=4)
)


@given(st.emails() | odd_addresses | st.text(max_size=80))
def test_normalizing_an_email_is_idempotent(raw: str) -> None:
    try:
        once = normalize_email(raw)
    except InvalidEmail:
        return
    assert normalize_email(once) == once
    assert once == once.strip().lower()


@given(st.emails())
def test_an_email_with_surrounding_space_and_capitals_normalizes_the_same(email: str) -> None:
    try:
        expected = normalize_email(email)
    except InvalidEmail:
        return
    assert normalize_email(f"  {email.upper()} ") == normalize_email(email.upper())
    assert normalize_email(f"\t{email}\n") == expected


jobs = st.one_of(
    st.builds(Ping, token=st.text()),
    st.builds(ExtractAttachment, attachment_id=st.uuids()),
    st.builds(TranscribeAudio, transcription_id=st.uuids()),
    st.builds(RunSearchSubscription, subscription_id=st.uuids()),
    st.builds(TitleChat, chat_id=st.uuids()),
)


@given(jobs)
def test_any_job_decodes_back_to_itself(job: Job) -> None:
    decoded = decode_job(encode_job(job))
    assert decoded == job
    assert type(decoded) is type(job)


minutes = st.integers(
    min_value=int(MIN_INTERVAL.total_seconds() // 60), max_value=MAX_INTERVAL.days * 24 * 60
)


@given(minutes, instants, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60)))
def test_after_a_claim_the_next_run_is_in_the_future(
    interval: int, created: datetime, elapsed: timedelta
) -> None:
    subscription = SearchSubscription.create(
        id=uuid.uuid4(), user_id=uuid.uuid4(), project_id=uuid.uuid4(), query="news",
        interval_minutes=interval, now=created,
    )  # fmt: skip
    now = created + elapsed
    subscription.claim(now)

    assert (subscription.claimed_at, subscription.last_run_at) == (now, None)  # not a run
    assert subscription.next_run_at > now
    assert subscription.next_run_at == now + timedelta(minutes=interval)
    assert not subscription.is_due(now)
    assert subscription.is_due(subscription.next_run_at)


@given(st.text())
def test_a_title_from_any_text_is_short_and_never_empty(text: str) -> None:
    title = title_from(text)
    assert 1 <= len(title) <= 61
    assert len(title) <= TITLE_MAX
    assert title == title.strip() or title.endswith("…")


@given(st.text(min_size=1).filter(lambda t: 0 < len(visible_words(t)) <= 60))
def test_a_short_text_is_its_own_title_with_spaces_collapsed_and_nothing_invisible(
    text: str,
) -> None:
    title = title_from(text)
    assert title == visible_words(text)
    assert not any(unicodedata.category(ch)[0] == "C" for ch in title)
    assert title == " ".join(title.split())


def test_a_title_leaves_control_and_format_characters_out() -> None:
    assert title_from("ring\x07 the \u202ebell\u200b\tnow\x00") == "ring the bell now"
    assert title_from("\x1b\u200b") == "New chat"


@given(st.text(max_size=20))
def test_a_name_given_by_a_user_is_kept_only_with_something_visible(text: str) -> None:
    folded = " ".join(text.split())
    if visible_words(folded) and not any(unicodedata.category(ch) == "Cc" for ch in folded):
        assert clean_name(text, limit=TITLE_MAX, field="title", what="A title") == folded
    else:
        with pytest.raises(InvalidInput, match="character") as caught:
            clean_name(text, limit=TITLE_MAX, field="title", what="A title")
        assert caught.value.details["field"] == "title"
