"""A voice message: a start without text whose recordings' transcript is the message."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.chats import MESSAGE_MAX
from whalli.domain.model.errors import InvalidInput
from whalli.domain.services.chat.opening import read_attachments
from whalli.ports.unit_of_work import UnitOfWork

NO_MESSAGE = (
    "A message is required: write one, or attach a voice recording (an uploaded audio file), "
    "whose transcript becomes the message."
)


def is_recording(attachment: Attachment) -> bool:
    return attachment.content_type.startswith("audio/")


@dataclass(frozen=True)
class VoiceMessage:
    """The message a start without text sends: its recordings' transcripts, in the order the
    files were named (a blank line between two), and the other files, still attached."""

    text: str
    others: tuple[UUID, ...]
    recordings: tuple[Attachment, ...]


async def voice_message(
    uow: UnitOfWork, project_id: UUID, attachment_ids: tuple[UUID, ...]
) -> VoiceMessage:
    """Rules:
    - the files are checked as any attached file is (``read_attachments``: in the chat's
      project, else ``AttachmentNotFound``; transcribed, else ``AttachmentNotReady``, which the
      start waits for as it waits for any file's text);
    - at least one is a recording (audio) whose transcript says something, else
      ``InvalidInput`` naming ``message``;
    - the transcript is the message (cut to ``MESSAGE_MAX``); a recording is not attached to it
      as well, so its words reach the model once; the other files stay attached."""
    files = await read_attachments(uow, project_id, attachment_ids)
    recordings = tuple(f for f in files if is_recording(f))
    spoken = [(f.extraction.text if f.extraction else "").strip() for f in recordings]
    text = "\n\n".join(t for t in spoken if t)[:MESSAGE_MAX]
    if not text:
        raise InvalidInput(
            NO_MESSAGE
            if not recordings
            else "The recording's transcript is empty: nothing was heard in it to send.",
            field="message",
        )
    others = tuple(f.id for f in files if not is_recording(f))
    return VoiceMessage(text=text, others=others, recordings=recordings)
