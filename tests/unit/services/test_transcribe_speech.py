"""``TranscribeSpeechHandler`` (``/v1/audio/transcriptions``) on in-memory adapters: how each
ending is counted in the transcription metrics, as the attachment path counts it (a rule's
refusal ``refused``, a provider's failure ``failed``, a transcript ``done``)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from tests.integration.entities import committed_world
from tests.support.fake_transcription import tiny_wav
from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.transcriber import InMemoryTranscriber
from whalli.adapters.memory.transcription_metrics import InMemoryTranscriptionMetrics
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.errors import (
    AccountDisabled,
    AttachmentTooLarge,
    InvalidInput,
    ModelNotFound,
    ModelNotInPlan,
    ProviderError,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ServiceUnavailable,
    TranscriptionNotConfigured,
    UnsupportedFileType,
    UserNotFound,
)
from whalli.domain.model.transcription_models import (
    Transcript,
    TranscriptionModel,
    TranscriptionSpec,
)
from whalli.domain.model.users import Plan
from whalli.domain.services.transcriptions.transcribe_speech import (
    TranscribeSpeech,
    TranscribeSpeechHandler,
)
from whalli.ports.transcriber import Transcriber

WAV = tiny_wav()
WHISPER = load_catalog(default_catalog_path()).transcription_model("whisper-1")
PRO_WHISPER = TranscriptionModel(
    name="whisper-1",
    spec=TranscriptionSpec(id="whisper-1", provider="openai", min_plan=Plan.PRO),
)


class Failing(Transcriber):
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        raise self.error


class Speech:
    def __init__(self, tmp_path: Path) -> None:
        self.store = MemoryStore()
        self.metrics = InMemoryTranscriptionMetrics()
        self.transcriber = InMemoryTranscriber(by_content={WAV: "Call me back."})
        self.audio = tmp_path / "speech"

    def handler(
        self, transcriber: Transcriber | None, model: TranscriptionModel = WHISPER,
        max_bytes: int = 1_000_000,
    ) -> TranscribeSpeechHandler:  # fmt: skip
        return TranscribeSpeechHandler(
            transcriber, model, max_bytes, uow=InMemoryUnitOfWork(self.store),
            clock=ManualClock(), ids=SequentialIds(), metrics=self.metrics,
        )  # fmt: skip

    async def user(self, *, disabled: bool = False) -> UUID:
        world = await committed_world(InMemoryUnitOfWork(self.store))
        if disabled:
            async with InMemoryUnitOfWork(self.store) as uow:
                user = await uow.users.get(world.user.id)
                user.disabled = True
                await uow.users.update(user)
                await uow.commit()
        return world.user.id

    def command(
        self, user_id: UUID, data: bytes = WAV, model: str = "whisper-1",
        language: str | None = None,
    ) -> TranscribeSpeech:  # fmt: skip
        self.audio.write_bytes(data)
        return TranscribeSpeech(user_id=user_id, audio=self.audio, model=model, language=language)


@pytest.fixture
def speech(tmp_path: Path) -> Speech:
    return Speech(tmp_path)


async def test_a_disabled_account_is_refused_and_counted_refused_never_failed(
    speech: Speech,
) -> None:
    user_id = await speech.user(disabled=True)

    with pytest.raises(AccountDisabled, match="disabled"):
        await speech.handler(speech.transcriber).execute(speech.command(user_id))

    assert speech.transcriber.calls == []
    assert speech.metrics.outcomes == {("whisper-1", "refused"): 1}


async def test_an_account_gone_since_it_authenticated_is_counted_refused(
    speech: Speech,
) -> None:
    with pytest.raises(UserNotFound, match="not found"):
        await speech.handler(speech.transcriber).execute(speech.command(UUID(int=7)))

    assert speech.metrics.outcomes == {("whisper-1", "refused"): 1}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"model": "gpt-4o"}, ModelNotFound, "does not exist"),
        ({"language": "english!"}, InvalidInput, "ISO-639-1"),
        ({"data": b"Just some notes.\n"}, UnsupportedFileType, "cannot be transcribed"),
        ({"data": b""}, UnsupportedFileType, "."),
        ({"data": WAV + b"\x00" * 1_000_000}, AttachmentTooLarge, "transcription limit"),
    ],
    ids=["unknown-model", "bad-language", "not-audio", "empty", "too-large"],
)
async def test_each_refusal_by_a_rule_is_counted_refused_under_the_configured_model(
    speech: Speech, change: dict[str, str], error: type[Exception], match: str
) -> None:
    user_id = await speech.user()

    command = speech.command(user_id, **change)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        await speech.handler(speech.transcriber).execute(command)

    assert speech.transcriber.calls == []
    assert speech.metrics.outcomes == {("whisper-1", "refused"): 1}


async def test_a_plan_without_the_model_is_counted_refused(speech: Speech) -> None:
    user_id = await speech.user()

    with pytest.raises(ModelNotInPlan, match="needs pro"):
        await speech.handler(speech.transcriber, PRO_WHISPER).execute(speech.command(user_id))

    assert speech.metrics.outcomes == {("whisper-1", "refused"): 1}


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ServiceUnavailable("The transcription provider answered 503."), "failed"),
        (ProviderError("The provider refused the key."), "failed"),
        (ProviderRateLimited("The provider is rate limiting."), "failed"),
        (ProviderRejectedRequest("The audio is not valid."), "refused"),
    ],
    ids=["unavailable", "rejected-key", "rate-limited", "audio-refused"],
)
async def test_a_providers_failure_is_counted_failed_and_its_refusal_of_the_audio_refused(
    speech: Speech, error: Exception, outcome: str
) -> None:
    user_id = await speech.user()

    with pytest.raises(type(error), match=str(error)[:10]):
        await speech.handler(Failing(error)).execute(speech.command(user_id))

    assert speech.metrics.outcomes == {("whisper-1", outcome): 1}


async def test_a_transcript_is_counted_done_and_nothing_while_none_is_configured(
    speech: Speech,
) -> None:
    user_id = await speech.user()
    assert await speech.handler(speech.transcriber).execute(speech.command(user_id)) == (
        "Call me back."
    )

    with pytest.raises(TranscriptionNotConfigured, match="not configured"):
        await speech.handler(None).execute(speech.command(user_id))
    speech.handler(None).refused(InvalidInput("model is required.", field="model"))

    assert speech.metrics.outcomes == {("whisper-1", "done"): 1}


async def test_a_refusal_the_entrypoint_made_is_counted_refused(speech: Speech) -> None:
    speech.handler(speech.transcriber).refused(InvalidInput("model is required.", field="model"))

    assert speech.metrics.outcomes == {("whisper-1", "refused"): 1}
