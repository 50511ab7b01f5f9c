"""How ``POST /v1/audio/transcriptions`` counts its endings in ``whalli_transcriptions_total``,
read from the real app's ``/api/metrics`` (the embedded Postgres, Redis and S3, loopback HTTP,
the loopback speech-to-text server of ``tests.support.fake_transcription``): a refusal by a rule
(a disabled account, an unknown model, a field, the file) is ``refused``, a provider's failure
``failed``, as the attachment path counts them. Counters are process-wide: each test compares
its own before and after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.integration.http.test_s23_hunt_audio import (  # noqa: F401  (fixtures)
    ROUTE,
    WAIT_S,
    WAV,
    _within,
    body,
    headers,
    provider,
    queue_name,
    speech,
    spool,
    voice,
)
from tests.integration.test_transcription_worker import Voice
from tests.support.access import changed
from tests.support.fake_transcription import Answer, openai_error
from tests.support.resolve import resolved

REFUSED = 'whalli_transcriptions_total{model="whisper-1",outcome="refused"}'
FAILED = 'whalli_transcriptions_total{model="whisper-1",outcome="failed"}'
DONE = 'whalli_transcriptions_total{model="whisper-1",outcome="done"}'


async def _counts(app: Voice) -> dict[str, float]:
    """The transcription outcomes of ``/api/metrics`` (no scrape token configured here)."""
    response = await app.client.get("/api/metrics")
    assert response.status_code == 200, response.text
    found: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("whalli_transcriptions_total{"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return {name: found.get(name, 0.0) for name in (REFUSED, FAILED, DONE)}


def _added(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after}


async def _disable(app: Voice) -> None:
    """Disable the caller's account through the production repository (real Postgres)."""
    uow = await resolved(app.container.adapters.unit_of_work())
    async with uow:
        user = await uow.users.get(app.user_id)
        user.disabled = True
        await uow.users.update(user)
        await uow.commit()
    await changed(app.container, app.user_id)


async def test_an_account_disabled_while_its_audio_arrives_is_refused_and_counted_refused(
    voice: Voice,  # noqa: F811
    spool: Path,  # noqa: F811
) -> None:
    """Authenticated, then disabled before the form was read: the use case reads the account
    fresh, refuses it, and counts a refusal (not a failure)."""
    before = await _counts(voice)
    url = httpx.URL(str(voice.client.base_url))
    full = body(WAV)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: {len(full)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers(voice).items())
        + "\r\n"
    )
    try:
        writer.write(head.encode() + full[:300])
        await writer.drain()

        async def spooled() -> bool:  # authenticated: the route made its temporary file
            return any(spool.iterdir())

        assert await _within(spooled), "the upload never reached the route"
        await _disable(voice)
        writer.write(full[300:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), WAIT_S)
    finally:
        writer.close()

    assert status_line.split()[1] in (b"401", b"403"), status_line
    assert voice.speech.requests == []
    assert _added(before, await _counts(voice)) == {REFUSED: 1, FAILED: 0, DONE: 0}


async def test_each_refusal_by_a_rule_counts_refused_and_a_provider_failure_failed(
    voice: Voice,  # noqa: F811
) -> None:
    before = await _counts(voice)
    refusals = [
        body(WAV, fields={"model": "made-up-model"}),  # 404
        body(WAV, fields={"model": "whisper-1", "language": "english!"}),  # 400
        body(WAV, fields={"model": "whisper-1", "prompt": "x"}),  # a field not taken: 400
        body(WAV, fields={}),  # no model: 400
        body(b"notes, not audio\n"),  # 415
        body(WAV + b"\x00" * 30_000),  # over the 20,000 bytes configured: 413
    ]
    for content in refusals:
        response = await voice.client.post(ROUTE, content=content, headers=headers(voice))
        assert 400 <= response.status_code < 500, response.text
    voice.speech.script(
        Answer(400, openai_error("Audio file might be corrupted")),  # the audio: refused
        Answer(503, openai_error("overloaded")),  # the provider: failed
    )
    refused_audio = await voice.client.post(ROUTE, content=body(WAV), headers=headers(voice))
    unavailable = await voice.client.post(ROUTE, content=body(WAV), headers=headers(voice))

    assert refused_audio.status_code == 400, refused_audio.text
    assert unavailable.status_code == 503, unavailable.text
    assert _added(before, await _counts(voice)) == {
        REFUSED: len(refusals) + 1,
        FAILED: 1,
        DONE: 0,
    }
