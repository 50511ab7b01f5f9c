"""What a chat reads of its files' text (the real app, Postgres, Redis and S3; the provider on
loopback records what reached the model): only as much of each text as a prompt uses, cut by
Postgres (``AttachmentRepository.get_many_excerpts``), the prompt staying what the whole text
gave (label, text, its last characters), in a start, a follow-up and a regeneration; and a text
that extraction cut short (``WHALLI_EXTRACTION_MAX_CHARS``) is labelled so, its stored length
never given as the file's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionExcerpt, ExtractionResult
from whalli.domain.services.chat.context import ContextLimits
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

MODEL = "openai/gpt-4o-mini"
CAP = ContextLimits().attachment_char_cap  # 20,000: what a prompt takes of one file


def _text(length: int) -> str:
    """``length`` characters, not all ASCII, each stretch numbered (a cut shows where it fell)."""
    pieces, size, i = [], 0, 0
    while size < length:
        piece = f"§{i:06d} été "
        pieces.append(piece)
        size, i = size + len(piece), i + 1
    return "".join(pieces)[:length]


async def _file(
    pool: PostgresPool, user: dict[str, Any], name: str, text: str, *, truncated: bool = False
) -> str:
    """A file of ``user``'s personal project with its text extracted (``truncated``: as
    extraction records a text it stopped at ``WHALLI_EXTRACTION_MAX_CHARS``); its id."""
    user_id = uuid.UUID(user["user"]["id"])
    project_id, attachment_id = personal_project_id(user_id), uuid.uuid4()
    now = datetime.now(UTC)
    attachment = Attachment(
        id=attachment_id, project_id=project_id, user_id=user_id,
        object_key=Attachment.key_for(project_id, attachment_id), filename=name,
        content_type="application/pdf", size_bytes=10, sha256="0" * 64,
        created_at=now, updated_at=now,
    )  # fmt: skip
    attachment.start_processing(now)
    result = ExtractionResult(text=text, method="text", truncated=truncated)
    attachment.complete(result, now)
    async with PostgresUnitOfWork(pool) as uow:
        await uow.attachments.add(attachment)
        await uow.commit()
    return str(attachment_id)


async def test_a_file_longer_than_the_cap_reaches_the_model_as_its_whole_text_gave_it(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    text = _text(30_000)
    long = await _file(pg_pool, alice, "long.pdf", text)
    question = f"Summarise {uuid.uuid4()}"
    # what the prompt was when the whole text was read: the label with the whole length
    expected = f"Attached file: long.pdf (first {CAP} of 30000 characters)\n{text[:CAP]}"

    first = await chat.start(alice["auth"], model=MODEL, message=question, attachmentIds=[long])
    await chat.events(first["sessionId"])
    sent = chat.provider.requests[-1].body["messages"][-1]["content"]
    assert sent == f"{expected}\n\n{question}"
    assert sent.removesuffix(f"\n\n{question}").endswith(text[CAP - 12 : CAP])
    assert text[CAP : CAP + 12] not in sent

    follow_up = await chat.start(
        alice["auth"], model=MODEL, message="And then?", chatId=first["chatId"]
    )
    await chat.events(follow_up["sessionId"])
    history = chat.provider.requests[-1].body["messages"]
    assert history[0] == {"role": "user", "content": sent}  # the earlier file, read cut
    assert history[-1] == {"role": "user", "content": "And then?"}

    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": first["chatId"]}, headers=alice["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    await chat.events(regenerated.json()["sessionId"])
    assert chat.provider.requests[-1].body["messages"][0]["content"] == sent


async def test_a_file_within_the_cap_and_a_blank_one_reach_the_model_as_before(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    whole = _text(CAP)
    exact = await _file(pg_pool, alice, "exact.pdf", whole)
    blank = await _file(pg_pool, alice, "blank.pdf", " \n\u3000" * 10_000)  # blank past the cap
    question = f"Compare {uuid.uuid4()}"

    started = await chat.start(
        alice["auth"], model=MODEL, message=question, attachmentIds=[exact, blank]
    )
    await chat.events(started["sessionId"])

    assert chat.provider.requests[-1].body["messages"][-1]["content"] == (
        f"Attached file: exact.pdf\n{whole}\n\n"
        "Attached file: blank.pdf\n(no text could be extracted from this file)\n\n"
        f"{question}"
    )


async def test_a_text_cut_at_extraction_is_labelled_so_not_as_the_files_size(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    capped, short = _text(25_000), _text(5_000)
    big = await _file(pg_pool, alice, "big.pdf", capped, truncated=True)
    paged = await _file(pg_pool, alice, "paged.pdf", short, truncated=True)
    question = f"Read {uuid.uuid4()}"

    first = await chat.start(
        alice["auth"], model=MODEL, message=question, attachmentIds=[big, paged]
    )
    await chat.events(first["sessionId"])
    sent = chat.provider.requests[-1].body["messages"][-1]["content"]

    cut = "its text was cut at extraction after {} characters: the file holds more"
    assert sent == (
        f"Attached file: big.pdf (first {CAP} characters; {cut.format(25_000)})\n"
        f"{capped[:CAP]}\n\n"
        f"Attached file: paged.pdf ({cut.format(5_000)})\n{short}\n\n{question}"
    )
    assert f"of {25_000} characters" not in sent  # the stored length is not the file's

    follow_up = await chat.start(
        alice["auth"], model=MODEL, message="More?", chatId=first["chatId"]
    )
    await chat.events(follow_up["sessionId"])
    assert chat.provider.requests[-1].body["messages"][0]["content"] == sent


async def test_the_repository_returns_no_more_of_a_text_than_the_prompt_cap(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    alice = await chat.world.register("alice")
    million = _text(1_000_000)  # WHALLI_EXTRACTION_MAX_CHARS' default
    files = [await _file(pg_pool, alice, f"f{i}.pdf", million, truncated=True) for i in range(3)]
    small = await _file(pg_pool, alice, "small.pdf", "Total: 42 units")
    ids = [uuid.UUID(i) for i in (*files, small)]

    async with PostgresUnitOfWork(pg_pool) as uow:
        read = await uow.attachments.get_many_excerpts(ids, CAP)

    assert set(read) == set(ids)
    for file_id in ids[:3]:
        excerpt = read[file_id].extraction
        assert isinstance(excerpt, ExtractionExcerpt)
        assert excerpt.text == million[:CAP]
        assert (excerpt.length, excerpt.truncated, excerpt.blank) == (1_000_000, True, False)
    whole = read[ids[3]].extraction
    assert isinstance(whole, ExtractionExcerpt)
    assert (whole.text, whole.length) == ("Total: 42 units", 15)
