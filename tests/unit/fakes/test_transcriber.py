from __future__ import annotations

from pathlib import Path

import pytest

from whalli.adapters.memory.transcriber import InMemoryTranscriber
from whalli.domain.model.errors import ProviderError


async def test_the_text_configured_for_the_file_name_is_returned(tmp_path: Path) -> None:
    audio = tmp_path / "memo.webm"
    audio.write_bytes(b"\x1a\x45\xdf\xa3")
    transcriber = InMemoryTranscriber(by_name={"memo.webm": "Buy milk."})

    assert (await transcriber.transcribe(audio, "audio/webm", "en")).text == "Buy milk."
    assert transcriber.calls == [("memo.webm", "audio/webm", "en")]


async def test_the_text_configured_for_the_content_is_returned(tmp_path: Path) -> None:
    audio = tmp_path / "upload-1"
    audio.write_bytes(b"spoken bytes")
    transcriber = InMemoryTranscriber(by_content={b"spoken bytes": "Hello there."})

    assert (await transcriber.transcribe(audio, "audio/ogg")).text == "Hello there."


async def test_audio_without_a_configured_text_fails_like_a_provider(tmp_path: Path) -> None:
    audio = tmp_path / "noise.wav"
    audio.write_bytes(b"...")

    with pytest.raises(ProviderError, match="could not be transcribed"):
        await InMemoryTranscriber().transcribe(audio, "audio/wav")
