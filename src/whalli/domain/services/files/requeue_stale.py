"""Use case: re-enqueue the extraction of attachments whose job was lost (the sweeper)."""

from __future__ import annotations

import logging
from datetime import timedelta

from whalli.domain.model.attachments import AttachmentStatus
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.services.files.transcribe_attachment import end_transcription, is_audio
from whalli.ports.clock import Clock
from whalli.ports.job_queue import JobQueue
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

GAVE_UP = "the extraction did not finish (it was tried several times)"


class RequeueStaleAttachments:
    """Queue ``ExtractAttachment`` again for attachments nobody is working on.

    Rules:
    - ``pending`` for longer than ``older_than``: the upload committed but its job was never
      queued (the queue was down) or was lost: queue it again;
    - ``processing`` without a change for longer than ``processing_older_than``: its job was
      dead-lettered (retries exhausted while a service was down) or lost: queue it again;
    - unless it was created more than ``give_up_after`` ago: a file that keeps killing its
      workers would otherwise come back forever, so it ends ``failed``, and an audio file's
      running transcription with it (same reason, same transaction);
    - "for longer than" counts from the last change or the last time the sweeper queued it, and
      the sweeper records the requeue (``requeued_at``) in the same statement that picks it: a
      job merely waiting behind a backlog is not queued again at every run, only once per
      threshold, and two sweepers running at once never both queue the same attachment;
    - at most ``batch`` attachments of each kind per run, least recently touched first;
    - a job queued twice is harmless (the extraction skips finished attachments); a requeue
      recorded but not queued (the queue failed after the commit) is retried after the
      threshold.

    ``execute`` returns how many jobs it queued.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        queue: JobQueue,
        clock: Clock,
        *,
        older_than: timedelta = timedelta(minutes=5),
        processing_older_than: timedelta = timedelta(minutes=15),
        give_up_after: timedelta = timedelta(days=1),
        batch: int = 100,
    ) -> None:
        self._uow, self._queue, self._clock = uow, queue, clock
        self._older_than, self._processing_older_than = older_than, processing_older_than
        self._give_up_after, self._batch = give_up_after, batch

    async def execute(self) -> int:
        now = self._clock.now()
        async with self._uow as uow:
            pending = await uow.attachments.claim_stale(
                AttachmentStatus.PENDING, now - self._older_than, now, limit=self._batch
            )
            processing = await uow.attachments.claim_stale(
                AttachmentStatus.PROCESSING,
                now - self._processing_older_than,
                now,
                limit=self._batch,
            )
            requeue = [a.id for a in pending]
            for stale in processing:
                if stale.created_at >= now - self._give_up_after:
                    requeue.append(stale.id)
                    continue
                # claimed: locked and read as committed, so no worker took it over meanwhile
                stale.fail(GAVE_UP, now)
                await uow.attachments.update(stale)
                if is_audio(stale):
                    await end_transcription(uow, stale, GAVE_UP, now)
            await uow.commit()
        for attachment_id in requeue:
            await self._queue.enqueue(ExtractAttachment(attachment_id=attachment_id))
        if requeue:
            log.info("Queued the extraction of %d stale attachments again.", len(requeue))
        return len(requeue)
