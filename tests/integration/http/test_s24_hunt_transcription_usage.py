"""Hunt S24 of what transcriptions use and cost (commit 54b8fce), end to end: the real app on the
embedded Postgres, Redis and S3, served over loopback HTTP, and the loopback speech-to-text
server of ``tests.support.fake_transcription`` speaking OpenAI's multipart wire protocol, scripted
to answer odd or hostile ``usage`` objects. The attachment path's job is delivered in-process to
the production handler (``ExtractAttachmentHandler``, as ``test_transcription_usage`` does): no
worker process. Waits are bounded; nothing asserts how long anything took."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.http.test_s23_hunt_audio import ROUTE, body, headers
from tests.integration.test_transcription_usage import (
    THREE_SECONDS,
    _transcribing,
    usage,
)
from tests.integration.test_transcription_worker import (  # noqa: F401  (the fixtures)
    Voice,
    queue_name,
    speech,
    voice,
)
from tests.support.fake_transcription import TRANSCRIPT, Answer, FakeTranscriptionServer
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chats import MAX_REPORTED_TOKENS
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.services.files.extract_attachment import ExtractAttachmentHandler
from whalli.ports.usage import UsageRecord

WAIT_S = 60  # a bound on a wait, not a speed assertion


def said(usage_object: Any, text: str = TRANSCRIPT) -> Answer:
    """A 200 transcription answer with ``usage_object`` as its usage."""
    return Answer(200, {"text": text, "usage": usage_object})


def raw(json_text: bytes) -> Answer:
    """A 200 answer of exactly these bytes (JSON the standard library reads: NaN, Infinity)."""
    return Answer(200, json_text, {"content-type": "application/json"})


async def v1(app: Voice, data: bytes = THREE_SECONDS) -> httpx.Response:
    return await app.client.post(ROUTE, content=body(data), headers=headers(app))


async def deliver(app: Voice, file_id: str) -> None:
    """The file's extraction job, delivered to the production handler in this process."""
    handler: ExtractAttachmentHandler = await resolved(app.container.services.extract_attachment())
    await handler.execute(ExtractAttachment(attachment_id=uuid.UUID(file_id)))


async def within(check: Any) -> bool:
    """Poll ``check`` until true, up to WAIT_S (a bound on a wait, not a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def add_record(app: Voice, **fields: Any) -> None:
    """A usage record written through the production repository (real Postgres)."""
    uow = await resolved(app.container.adapters.unit_of_work())
    record = UsageRecord(
        **{
            "id": uuid.uuid4(), "user_id": app.user_id, "message_id": None,
            "model": "whisper-1", "provider": "openai", "prompt_tokens": 0,
            "completion_tokens": 0, "cost_usd": 0.0, "cached": False,
            "created_at": datetime.now(UTC), **fields,
        }
    )  # fmt: skip
    async with uow.autocommit() as writing:
        await writing.usage.add(record)


# --- hostile usage from the provider ---------------------------------------------------------


async def test_a_token_count_beyond_what_postgres_holds_still_answers_the_transcript(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.script(said({"type": "tokens", "input_tokens": 2**64 - 1, "output_tokens": 10}))

    response = await v1(voice)

    assert response.status_code == 200, response.text
    assert response.json() == {"text": TRANSCRIPT}
    assert (await usage(voice))["total"]["requests"] == 1  # the paid call is on record


async def test_a_token_count_beyond_what_postgres_holds_still_ends_the_file_done(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.script(
        said(
            {
                "type": "tokens", "input_tokens": 2**63,
                "input_token_details": {"text_tokens": 2**62, "audio_tokens": 2**62},
                "output_tokens": 1,
            }
        )
    )  # fmt: skip
    uploaded = await voice.upload(THREE_SECONDS)  # queued to a queue no worker reads
    assert uploaded.status_code == 201, uploaded.text

    await deliver(voice, uploaded.json()["id"])

    assert (await voice.file(uploaded.json()["id"]))["status"] == "done"
    assert (await usage(voice))["total"]["requests"] == 1


async def test_an_implausible_token_count_is_not_stored_and_charged(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer,  # noqa: F811
) -> None:  # fmt: skip
    speech.script(
        said(
            {
                "type": "tokens", "input_tokens": 10**12,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 10**12},
                "output_tokens": 12, "total_tokens": 10**12 + 12,
            }
        )
    )  # fmt: skip
    async with _transcribing(
        stack_urls, unique, speech, WHALLI_TRANSCRIPTION_MODEL="gpt-4o-transcribe"
    ) as app:
        response = await v1(app)
        assert response.status_code == 200, response.text
        total = (await usage(app))["total"]
    assert total["requests"] == 1
    # as a chat reply's usage: a count above the cap "cannot be true", and is not charged
    assert total["promptTokens"] <= MAX_REPORTED_TOKENS
    assert total["costUsd"] < 1.0, total


async def test_absurd_seconds_said_by_the_provider_never_break_the_usage_page(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.script(
        said({"type": "duration", "seconds": 1e308}),
        said({"type": "duration", "seconds": 1e308}),
    )
    assert (await v1(voice)).status_code == 200
    assert (await v1(voice)).status_code == 200

    response = await voice.client.get("/api/usage", headers=voice.auth)

    assert response.status_code == 200, response.text
    assert response.json()["total"]["requests"] == 2


async def test_partial_token_details_keep_every_input_token_the_provider_counted(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer,  # noqa: F811
) -> None:  # fmt: skip
    speech.script(
        said(
            {
                "type": "tokens", "input_tokens": 1_200,
                "input_token_details": {"text_tokens": 200}, "output_tokens": 300,
                "total_tokens": 1_500,
            }
        )
    )  # fmt: skip
    async with _transcribing(
        stack_urls, unique, speech, WHALLI_TRANSCRIPTION_MODEL="gpt-4o-transcribe"
    ) as app:
        assert (await v1(app)).status_code == 200
        total = (await usage(app))["total"]
    assert (total["promptTokens"], total["completionTokens"]) == (1_200, 300)
    # the 1,000 tokens not said to be text are the audio's (as tokens said without details)
    expected = (200 * 2.50 + 1_000 * 6.00 + 300 * 10.00) / 1_000_000
    assert total["costUsd"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "answer",
    [
        raw(b'{"text": "hi", "usage": {"type": "duration", "seconds": NaN}}'),
        raw(b'{"text": "hi", "usage": {"type": "duration", "seconds": Infinity}}'),
        raw(b'{"text": "hi", "usage": {"type": "duration", "seconds": -Infinity}}'),
        said({"type": "duration", "seconds": -90.0}, "hi"),
        said({"type": "duration", "seconds": "90"}, "hi"),
        said({"type": "duration"}, "hi"),
        said({"type": "tokens", "input_tokens": -5, "output_tokens": -7}, "hi"),
        said("ninety seconds", "hi"),
    ],
    ids=["nan", "infinity", "minus-infinity", "negative", "string", "no-seconds",
         "negative-tokens", "not-an-object"],
)  # fmt: skip
async def test_an_unusable_duration_falls_back_to_the_wav_header_and_costs_nothing_negative(
    voice: Voice,  # noqa: F811
    answer: Answer,
) -> None:
    voice.speech.script(answer)

    response = await v1(voice)

    assert response.status_code == 200, response.text
    assert response.json() == {"text": "hi"}
    total = (await usage(voice))["total"]
    assert total["requests"] == 1
    assert total["audioSeconds"] == pytest.approx(3.0)  # the WAV header's 24,000 frames at 8 kHz
    assert (total["promptTokens"], total["completionTokens"]) == (0, 0)
    assert total["costUsd"] == pytest.approx(0.0003)  # whisper-1: 3/60 of $0.006, never < 0


async def test_tokens_and_seconds_both_said_keep_the_said_seconds(
    voice: Voice,  # noqa: F811
) -> None:
    """whisper-1 configured, the server says a duration: its seconds, not the header's."""
    voice.speech.script(said({"type": "duration", "seconds": 42.5, "input_tokens": 99}))

    assert (await v1(voice)).status_code == 200

    total = (await usage(voice))["total"]
    assert total["audioSeconds"] == pytest.approx(42.5)
    assert total["costUsd"] == pytest.approx(42.5 / 60 * 0.006)


# --- a lying WAV header ------------------------------------------------------------------------


def _wav_header(*, byte_rate: int, data_size: int, fmt_tag: int = 1, payload: bytes = b"") -> bytes:
    fmt = (
        fmt_tag.to_bytes(2, "little") + (1).to_bytes(2, "little")
        + (8000).to_bytes(4, "little") + byte_rate.to_bytes(4, "little")
        + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    )  # fmt: skip
    chunks = b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    chunks += b"data" + data_size.to_bytes(4, "little") + payload
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


@pytest.mark.parametrize("data_size", [0xFFFFFFFF, 0x7FFFFFFF, 0])
async def test_a_wav_header_claiming_hours_counts_only_the_bytes_it_holds(
    voice: Voice,  # noqa: F811
    data_size: int,
) -> None:
    """A 4,000-byte file at 16,000 bytes a second is a quarter of a second, whatever its
    ``data`` chunk claims (a streamed WAV's 0xFFFFFFFF, or 2 GB)."""
    voice.speech.script(said(None, "hi"))  # a self-hosted server: no usage said
    audio = _wav_header(byte_rate=16_000, data_size=data_size, payload=b"\x01\x00" * 2000)

    response = await v1(voice, audio)

    assert response.status_code == 200, response.text
    assert (await usage(voice))["total"]["audioSeconds"] == pytest.approx(0.25)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return kind + len(data).to_bytes(4, "little") + data + b"\x00" * (len(data) % 2)


def _riff(*chunks: bytes) -> bytes:
    joined = b"".join(chunks)
    return b"RIFF" + (4 + len(joined)).to_bytes(4, "little") + b"WAVE" + joined


# WAVE_FORMAT_EXTENSIBLE: 40 bytes of fmt (cbSize 22, valid bits, channel mask, the PCM GUID)
_EXTENSIBLE = (
    (0xFFFE).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16_000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + (22).to_bytes(2, "little") + (16).to_bytes(2, "little") + (4).to_bytes(4, "little")
    + bytes.fromhex("0100000000001000800000aa00389b71")
)  # fmt: skip
_PCM = _EXTENSIBLE[:2].replace(b"\xfe\xff", b"\x01\x00") + _EXTENSIBLE[2:16]
_SAMPLES = b"\x01\x00" * 2000  # 4,000 bytes: a quarter of a second at 16,000 bytes a second


@pytest.mark.parametrize(
    ("audio", "seconds"),
    [
        (_riff(_chunk(b"fmt ", _EXTENSIBLE), _chunk(b"data", _SAMPLES)), 0.25),
        # a metadata chunk of odd size (padded) between fmt and data
        (_riff(_chunk(b"fmt ", _PCM), _chunk(b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00"),
               _chunk(b"data", _SAMPLES)), 0.25),
        # data before fmt: the header does not tell the rate, so no duration is made up
        (_riff(_chunk(b"data", _SAMPLES), _chunk(b"fmt ", _PCM)), 0.0),
        # a byte rate of 0 (a broken header): nothing divided by it
        (_riff(_chunk(b"fmt ", _PCM[:8] + bytes(4) + _PCM[12:]), _chunk(b"data", _SAMPLES)), 0.0),
    ],
    ids=["extensible", "list-chunk-odd-size", "data-before-fmt", "zero-byte-rate"],
)  # fmt: skip
async def test_the_wav_header_duration_of_unusual_but_valid_layouts(
    voice: Voice,  # noqa: F811
    audio: bytes,
    seconds: float,
) -> None:
    voice.speech.script(said(None, "hi"))  # no usage said: the header is read

    response = await v1(voice, audio)

    assert response.status_code == 200, response.text
    total = (await usage(voice))["total"]
    assert total["requests"] == 1
    assert total["audioSeconds"] == pytest.approx(seconds)
    assert total["costUsd"] == pytest.approx(seconds / 60 * 0.006)


# --- metrics ---------------------------------------------------------------------------------


async def _samples(app: Voice) -> dict[str, float]:
    """The transcription samples of ``/api/metrics`` (no scrape token configured here)."""
    response = await app.client.get("/api/metrics")
    assert response.status_code == 200, response.text
    found: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("whalli_transcription"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def test_metrics_label_the_configured_model_never_the_name_the_client_sent(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer,  # noqa: F811
) -> None:  # fmt: skip
    done = 'whalli_transcriptions_total{model="gpt-4o-transcribe",outcome="done"}'
    seconds = 'whalli_transcription_audio_seconds_total{model="gpt-4o-transcribe"}'
    async with _transcribing(
        stack_urls, unique, speech, WHALLI_TRANSCRIPTION_MODEL="gpt-4o-transcribe"
    ) as app:
        before = await _samples(app)
        response = await v1(app)  # the SDK's usual model name: an alias of the configured one
        assert response.status_code == 200, response.text
        wrong = await app.client.post(
            ROUTE, content=body(THREE_SECONDS, fields={"model": "made-up-" + unique}),
            headers=headers(app),
        )  # fmt: skip
        assert wrong.status_code == 404, wrong.text
        after = await _samples(app)
    assert after[done] - before.get(done, 0.0) == 1
    assert after[seconds] - before.get(seconds, 0.0) == pytest.approx(3.0)
    changed = {name for name in after if after[name] != before.get(name)}
    assert not [name for name in changed if unique in name or 'model="whisper-1"' in name]


# --- usage that must not be lost or doubled -----------------------------------------------------


async def test_a_client_leaving_after_the_provider_was_asked_still_records_the_usage_once(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.seconds = 7.0
    gate = voice.speech.hold()
    request = asyncio.create_task(v1(voice))

    async def arrived() -> bool:
        return bool(voice.speech.requests)

    assert await within(arrived), "the transcription never reached the provider"
    request.cancel()  # the client goes away while the provider works
    with pytest.raises(asyncio.CancelledError):
        await request
    gate.set()

    async def recorded() -> bool:
        return (await usage(voice))["total"]["requests"] >= 1

    assert await within(recorded), "the paid transcription was never recorded"
    assert (await v1(voice)).status_code == 200  # the app still answers; and one more record
    total = (await usage(voice))["total"]
    assert total["requests"] == 2
    assert total["audioSeconds"] == pytest.approx(14.0)
    assert len(voice.speech.requests) == 2


async def test_a_file_deleted_while_it_is_transcribed_still_has_its_usage_recorded(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.seconds = 60.0
    uploaded = await voice.upload(THREE_SECONDS)  # queued to a queue no worker reads
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    gate = voice.speech.hold()
    job = asyncio.create_task(deliver(voice, file_id))

    async def arrived() -> bool:
        return bool(voice.speech.requests) or job.done()

    assert await within(arrived)
    deleted = await voice.client.delete(f"/api/files/{file_id}", headers=voice.auth)
    assert deleted.status_code == 204, deleted.text
    gate.set()
    await job

    assert len(voice.speech.requests) == 1  # one minute of audio was transcribed, and paid for
    total = (await usage(voice))["total"]
    assert total["requests"] == 1
    assert total["costUsd"] == pytest.approx(0.006)


async def test_a_failed_provider_call_records_no_usage_and_a_refused_model_neither(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.script(Answer(503, {"error": {"message": "overloaded"}}))
    failed = await v1(voice)
    assert failed.status_code == 503, failed.text
    unknown = await voice.client.post(
        ROUTE, content=body(THREE_SECONDS, fields={"model": "gpt-4o-transcribe"}),
        headers=headers(voice),
    )  # fmt: skip
    assert unknown.status_code == 404, unknown.text

    assert (await usage(voice))["total"]["requests"] == 0


async def test_an_empty_transcript_is_still_a_paid_usage_record(
    voice: Voice,  # noqa: F811
) -> None:
    voice.speech.script(said({"type": "duration", "seconds": 30.0}, ""))

    response = await v1(voice)

    assert response.status_code == 200, response.text
    assert response.json() == {"text": ""}
    total = (await usage(voice))["total"]
    assert (total["requests"], total["audioSeconds"]) == (1, 30.0)
    assert total["costUsd"] == pytest.approx(0.003)


# --- /api/usage figures --------------------------------------------------------------------------


async def test_audio_seconds_per_day_and_per_model_add_up_to_the_total_across_days(
    voice: Voice,  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for seconds, at in (
        (0.1, midnight - timedelta(microseconds=1)),  # the last instant of yesterday
        (0.2, midnight),  # the first of today
        (0.7, midnight - timedelta(days=2)),
    ):
        await add_record(voice, audio_seconds=seconds, cost_usd=seconds / 60 * 0.006, created_at=at)
    await add_record(voice, model="openai/gpt-4o-mini", cost_usd=0.01, prompt_tokens=5)

    body_ = await usage(voice)

    total = body_["total"]
    assert total["audioSeconds"] == pytest.approx(1.0)
    assert sum(d["audioSeconds"] for d in body_["byDay"]) == pytest.approx(total["audioSeconds"])
    assert sum(m["audioSeconds"] for m in body_["byModel"]) == pytest.approx(total["audioSeconds"])
    days = {d["day"]: d["audioSeconds"] for d in body_["byDay"] if d["audioSeconds"]}
    yesterday = (midnight - timedelta(days=1)).date().isoformat()
    assert days[yesterday] == pytest.approx(0.1)
    assert days[midnight.date().isoformat()] == pytest.approx(0.2)
    chat = next(m for m in body_["byModel"] if m["model"] == "openai/gpt-4o-mini")
    assert chat["audioSeconds"] == 0.0

    today = midnight.date().isoformat()
    only_today = await usage(voice, path=f"/api/usage?from={today}&to={today}")
    assert only_today["total"]["audioSeconds"] == pytest.approx(0.2)


async def test_the_openapi_document_describes_audio_seconds_in_usage(
    voice: Voice,  # noqa: F811
) -> None:
    response = await voice.client.get("/api/docs/openapi.json")
    assert response.status_code == 200, response.text
    schemas = response.json()["components"]["schemas"]
    figures = [s for name, s in schemas.items() if "audioSeconds" in s.get("properties", {})]
    assert figures, "no usage schema lists audioSeconds"
    for schema in figures:
        assert schema["properties"]["audioSeconds"]["type"] == "number"
        assert "audioSeconds" in schema.get("required", [])
