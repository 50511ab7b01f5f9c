"""/v1/audio/transcriptions: OpenAI's multipart request and answers, on the fake container's
in-memory transcriber; and an audio upload refused while transcription is not configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.fake_transcription import tiny_wav
from tests.unit.http.accounts import seed_caller
from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.config import Settings
from whalli.domain.model.catalog import ModelCatalog
from whalli.domain.model.transcription_models import TranscriptionSpec, TranscriptionUsage
from whalli.domain.model.users import Plan

Client = AsyncTestClient[Litestar]
WAV = tiny_wav()
SPOKEN = "Book the meeting room for Thursday."
BOUNDARY = "audio-test-boundary"
LIMIT = 50_000


@pytest.fixture
def container(probes: list[FakeProbe], tmp_path: Path) -> FakeContainer:
    settings = Settings(
        env="test", transcription_model="large-v3", transcription_max_bytes=LIMIT,
        extraction_temp_dir=str(tmp_path),
    )  # fmt: skip
    found = FakeContainer(settings, probes)
    assert found.transcriber is not None
    found.transcriber.by_content[WAV] = SPOKEN
    return found


@pytest.fixture
async def bearer(container: FakeContainer, client: Client) -> dict[str, str]:
    caller = await seed_caller(container, client, "ada")
    return {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}


def form(
    data: bytes = WAV, *, before: dict[str, str] | None = None,
    after: dict[str, str] | None = None, filename: str = "memo.wav",
) -> bytes:  # fmt: skip
    def field(name: str, value: str) -> bytes:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        return head.encode() + value.encode() + b"\r\n"

    body = b"".join(field(k, v) for k, v in (before or {}).items())
    disposition = f'form-data; name="file"; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    body += (head + "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += b"".join(field(k, v) for k, v in (after or {}).items())
    return body + f"--{BOUNDARY}--\r\n".encode()


async def transcribe(client: Client, bearer: dict[str, str], body: bytes) -> Any:
    headers = {**bearer, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return await client.post("/v1/audio/transcriptions", content=body, headers=headers)


def error(response: Any) -> tuple[int, str | None, str | None]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["param"]


async def test_a_transcription_answers_openais_json_and_leaves_no_temporary_file(
    client: Client, bearer: dict[str, str], container: FakeContainer, tmp_path: Path
) -> None:
    response = await transcribe(client, bearer, form(before={"model": "whisper-1"}))

    assert response.status_code == 200, response.text
    assert response.json() == {"text": SPOKEN}
    assert container.transcriber is not None
    assert [c[1:] for c in container.transcriber.calls] == [("audio/wav", None)]
    assert list(tmp_path.iterdir()) == []


async def test_fields_after_the_file_the_configured_model_a_language_and_text_format(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    after = {"model": "large-v3", "language": "EN", "response_format": "text"}
    response = await transcribe(client, bearer, form(after=after))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"  # one charset
    assert response.text == SPOKEN
    assert container.transcriber is not None
    assert container.transcriber.calls[0][2] == "en"


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [
        ({"model": "gpt-4o"}, 404, "model_not_found", "model"),
        ({}, 400, "invalid_input", "model"),
        ({"model": "whisper-1", "response_format": "srt"}, 400, "invalid_input",
         "response_format"),
        ({"model": "whisper-1", "temperature": "0"}, 400, "invalid_input", "temperature"),
        ({"model": "whisper-1", "language": "english!"}, 400, "invalid_input", "language"),
    ],
)  # fmt: skip
async def test_what_cannot_be_honoured_is_refused_naming_the_param(
    client: Client, bearer: dict[str, str], fields: dict[str, str], status: int, code: str,
    param: str,
) -> None:  # fmt: skip
    response = await transcribe(client, bearer, form(before=fields))

    assert error(response) == (status, code, param), response.text


@pytest.mark.parametrize(
    "data",
    [b"Just some notes.\n", b"PK\x03\x04" + b"\x00" * 64, b"fLaC\x00\x00\x00\x22" + b"\x00" * 64],
    ids=["text", "zip", "flac"],  # zip and FLAC are refused by the type detection itself
)
async def test_a_file_that_is_not_audio_is_a_415_naming_the_file(
    client: Client, bearer: dict[str, str], data: bytes
) -> None:
    body = form(data, before={"model": "whisper-1"}, filename="a.wav")
    response = await transcribe(client, bearer, body)

    assert error(response) == (415, "unsupported_file_type", "file")


async def test_a_file_over_the_limit_is_a_413(client: Client, bearer: dict[str, str]) -> None:
    big = WAV + b"\x00" * LIMIT
    response = await transcribe(client, bearer, form(big, before={"model": "whisper-1"}))

    assert error(response) == (413, "attachment_too_large", "file")


async def test_without_a_credential_it_is_a_401_in_openais_shape(client: Client) -> None:
    response = await transcribe(client, {}, form(before={"model": "whisper-1"}))

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_without_a_transcriber_it_is_a_400_saying_so(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    container.transcriber = None

    response = await transcribe(client, bearer, form(before={"model": "whisper-1"}))

    assert error(response) == (400, "transcription_not_configured", None)
    assert "not configured" in response.json()["error"]["message"]


async def test_an_audio_upload_is_refused_with_a_422_while_transcription_is_not_configured(
    client: Client, container: FakeContainer
) -> None:
    container.transcriber = None
    ada = await seed_caller(container, client, "ada")
    created = await ada.call("POST", "/api/projects", {"name": "Voice notes"})
    project_id = created.json()["id"]
    headers = {**ada.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    response = await client.post(
        f"/api/files/upload?projectId={project_id}", content=form(), headers=headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "transcription_not_configured"
    assert response.json()["detail"] == "voice transcription is not configured on this server"
    listed = await ada.call("GET", f"/api/files?projectId={project_id}")
    assert listed.json()["items"] == []


async def test_the_route_is_documented_for_api_keys_and_access_tokens(client: Client) -> None:
    document = (await client.get("/api/docs/openapi.json")).json()

    operation = document["paths"]["/v1/audio/transcriptions"]["post"]
    assert operation["security"] == [{"apiKey": []}, {"accessToken": []}]


async def test_a_transcription_is_the_callers_usage_and_counted_in_the_metrics(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    assert container.transcriber is not None
    container.transcriber.usage = TranscriptionUsage(seconds=12.5)

    response = await transcribe(client, bearer, form(before={"model": "whisper-1"}))

    assert response.status_code == 200, response.text
    usage = (await client.get("/api/usage", headers=bearer)).json()
    assert (usage["total"]["requests"], usage["total"]["audioSeconds"]) == (1, 12.5)
    # large-v3 is no model of the catalog (a self-hosted server's): it costs nothing
    [model] = usage["byModel"]
    assert (model["model"], model["provider"], model["costUsd"]) == (
        "large-v3", "openai-compatible", 0.0,
    )  # fmt: skip
    assert container.transcription_metrics.outcomes == {("large-v3", "done"): 1}
    assert container.transcription_metrics.audio_seconds == {"large-v3": 12.5}


async def test_a_transcription_model_above_the_callers_plan_is_a_403_and_nothing_is_sent(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    pro = TranscriptionSpec(id="large-v3", provider="openai", min_plan=Plan.PRO)
    container.catalog = ModelCatalog(list(container.catalog), transcription=[pro])

    response = await transcribe(client, bearer, form(before={"model": "whisper-1"}))

    assert error(response) == (403, "model_not_in_plan", None)
    assert response.json()["error"]["type"] == "permission_error"
    assert "needs pro" in response.json()["error"]["message"]
    assert container.transcriber is not None
    assert container.transcriber.calls == []
    assert container.transcription_metrics.outcomes == {("large-v3", "refused"): 1}
    usage = (await client.get("/api/usage", headers=bearer)).json()
    assert usage["total"]["requests"] == 0


async def test_every_refusal_of_the_route_counts_refused_and_a_provider_failure_failed(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    whisper = {"model": "whisper-1"}
    refusals = [
        form(before={"model": "gpt-4o"}),  # an unknown model
        form(),  # no model
        form(before={**whisper, "response_format": "srt"}),
        form(before={**whisper, "temperature": "0"}),
        form(before={**whisper, "language": "english!"}),
        form(b"Just some notes.\n", before=whisper, filename="a.wav"),  # not audio
        form(WAV + b"\x00" * LIMIT, before=whisper),  # over the limit while it arrives
        form(WAV + b"\x00" * (LIMIT + 100_000), before=whisper),  # declared over it
    ]
    for body in refusals:
        response = await transcribe(client, bearer, body)
        assert 400 <= response.status_code < 500, response.text
    unknown_audio = tiny_wav(tone_hz=220)  # the in-memory provider fails on audio it lacks

    failed = await transcribe(client, bearer, form(unknown_audio, before=whisper))

    assert failed.status_code >= 500, failed.text
    assert container.transcription_metrics.outcomes == {
        ("large-v3", "refused"): len(refusals),
        ("large-v3", "failed"): 1,
    }
