"""Transcription metrics kept in memory, for tests to read back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from whalli.ports.transcription_metrics import TranscriptionMetrics


@dataclass
class InMemoryTranscriptionMetrics(TranscriptionMetrics):
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, outcome)
    audio_seconds: dict[str, float] = field(default_factory=dict)  # by model

    def transcribed(self, *, model: str, outcome: str, audio_seconds: float = 0.0) -> None:
        self.outcomes[(model, outcome)] += 1
        self.audio_seconds[model] = self.audio_seconds.get(model, 0.0) + audio_seconds
