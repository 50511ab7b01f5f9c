"""Transcription metrics in Prometheus (aggregated across processes like the HTTP metrics)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whalli.ports.transcription_metrics import TranscriptionMetrics

if TYPE_CHECKING:
    from prometheus_client import Counter


@dataclass(frozen=True, slots=True)
class _Collectors:
    transcriptions: Counter
    audio_seconds: Counter


@functools.cache
def _collectors() -> _Collectors:
    from prometheus_client import Counter

    return _Collectors(
        transcriptions=Counter(
            "whalli_transcriptions_total",
            "Transcriptions by model and outcome (done/refused/failed).",
            ["model", "outcome"],
        ),
        audio_seconds=Counter(
            "whalli_transcription_audio_seconds_total",
            "Seconds of audio transcribed, by model.",
            ["model"],
        ),
    )


def register() -> None:
    """Register the collectors now (they are made at the first transcription otherwise)."""
    _collectors()


class PrometheusTranscriptionMetrics(TranscriptionMetrics):
    def transcribed(self, *, model: str, outcome: str, audio_seconds: float = 0.0) -> None:
        c = _collectors()
        c.transcriptions.labels(model, outcome).inc()
        if audio_seconds > 0:
            c.audio_seconds.labels(model).inc(audio_seconds)
