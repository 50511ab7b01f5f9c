"""Background jobs: a tagged union of payloads, decoded by one module-level decoder.

Each job names the entity it works on, so a redelivered message can tell finished work apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec


class Job(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True):
    """Base of every queue payload."""


class Ping(Job, frozen=True, tag="ping", kw_only=True):
    """A diagnostic job: the worker records ``token`` so a caller can see the queue works."""

    token: str


class ExtractAttachment(Job, frozen=True, tag="extract_attachment", kw_only=True):
    attachment_id: UUID


class TranscribeAudio(Job, frozen=True, tag="transcribe_audio", kw_only=True):
    transcription_id: UUID


class RunSearchSubscription(
    Job, frozen=True, tag="run_search_subscription", kw_only=True, omit_defaults=True
):
    subscription_id: UUID
    # Whether the queue will not try this job again if it fails: set by the worker from the
    # message it runs (never sent: the default is omitted from the payload). True by default, so
    # that a caller that does not know records every failure.
    last_attempt: bool = True


class TitleChat(Job, frozen=True, tag="title_chat", kw_only=True):
    """Give a new chat a model-written title once its first reply is complete."""

    chat_id: UUID
    # The title the chat had when the job was queued (from its first message): the job titles
    # the chat only while it still has it. None (jobs queued before it existed): the title its
    # first message gives now.
    expected_title: str | None = None


class SendPasswordReset(Job, frozen=True, tag="send_password_reset", kw_only=True):
    """Email a password reset link to the account holding ``email`` (normalized), if one does.

    Queued for every request, whether an account holds the address or not: the worker looks
    it up, so the API's answer and its timing tell nothing. ``requested_at`` lets a job that
    waited longer than a link lives be dropped."""

    email: str
    requested_at: datetime


class SendEmailVerification(Job, frozen=True, tag="send_email_verification", kw_only=True):
    """Email the account ``user_id`` a link that verifies the address it has then."""

    user_id: UUID
    requested_at: datetime


AnyJob = (
    Ping
    | ExtractAttachment
    | TranscribeAudio
    | RunSearchSubscription
    | TitleChat
    | SendPasswordReset
    | SendEmailVerification
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyJob)


# Why the queue gave up on a job for good: its last attempt failed ("failed": it raised, or ran
# out of time), it waited past the queue's age limit and never ran ("expired"), or the workers
# running it kept dying ("interrupted").
AbandonCause = Literal["failed", "expired", "interrupted"]


class JobAbandoned(msgspec.Struct, frozen=True, kw_only=True):
    """The queue will not run ``job`` again: its work was not done (a dead letter).

    ``since``: when the attempt that failed began, or, for a job dropped without a run, when it
    was first queued; what the job's entity recorded from then on is newer than the failure."""

    job: Job
    cause: AbandonCause
    since: datetime


def encode_job(job: Job) -> bytes:
    return _encoder.encode(job)


def decode_job(data: bytes | str) -> AnyJob:
    """Decode a queue payload; raises ``msgspec.ValidationError`` for anything else."""
    job: AnyJob = _decoder.decode(data)
    return job
