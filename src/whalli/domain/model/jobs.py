"""Background jobs: a tagged union of payloads, decoded by one module-level decoder.

Each job names the entity it works on, so a redelivered message can tell finished work apart.
"""

from __future__ import annotations

from uuid import UUID

import msgspec


class Job(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True):
    """Base of every queue payload."""


class Ping(Job, tag="ping"):
    """A diagnostic job: the worker records ``token`` so a caller can see the queue works."""

    token: str


class ExtractAttachment(Job, tag="extract_attachment"):
    attachment_id: UUID


class TranscribeAudio(Job, tag="transcribe_audio"):
    transcription_id: UUID


class RunSearchSubscription(Job, tag="run_search_subscription"):
    subscription_id: UUID


AnyJob = Ping | ExtractAttachment | TranscribeAudio | RunSearchSubscription

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyJob)


def encode_job(job: Job) -> bytes:
    return _encoder.encode(job)


def decode_job(data: bytes | str) -> AnyJob:
    """Decode a queue payload; raises ``msgspec.ValidationError`` for anything else."""
    return _decoder.decode(data)
