"""What transcriptions report for dashboards."""

from __future__ import annotations

from typing import Protocol

# The outcomes of one transcription: ``done`` (a transcript came back), ``refused`` (a rule
# refused it: the caller's plan does not include the model, the account is disabled, the model
# or a field is unknown, the file is over the limit or not audio, or the provider refused the
# audio as invalid) or ``failed`` (the provider failed: unavailable, rate limiting, a rejected
# key; a background one is retried by the queue, each attempt counted).
OUTCOMES = ("done", "refused", "failed")


class TranscriptionMetrics(Protocol):
    def transcribed(self, *, model: str, outcome: str, audio_seconds: float = 0.0) -> None:
        """One transcription of ``model`` ended with ``outcome`` (one of ``OUTCOMES``);
        ``audio_seconds`` of audio were transcribed (a ``done`` one's). No user goes into a
        label."""
        ...
