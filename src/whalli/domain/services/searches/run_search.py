"""Use case: run one recurring search (the ``RunSearchSubscription`` job)."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from whalli.domain.model.errors import ProviderError, ServiceUnavailable, WhalliError
from whalli.domain.model.jobs import RunSearchSubscription
from whalli.domain.model.notifications import Notification
from whalli.domain.model.searches import (
    SearchHit,
    SearchResult,
    SearchSubscription,
    fingerprint,
    run_failure,
)
from whalli.domain.model.users import User
from whalli.domain.services.searches.runnable import runnable
from whalli.ports.clock import Clock
from whalli.ports.email_sender import EmailMessage, EmailSender
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork
from whalli.ports.web_search import WebSearch

log = logging.getLogger(__name__)

NOTIFICATION_KIND = "search_results"
RESULTS_PER_RUN = 10
_BODY_TITLES = 5


def results_link(subscription_id: UUID) -> str:
    return f"/api/searches/{subscription_id}/results"


def headline(count: int, query: str) -> str:
    return f"{count} new result{'' if count == 1 else 's'} for {query}"


class RunSearchHandler:
    """Search the web for a subscription's query and tell its user what is new.

    Rules:
    - nothing happens for a subscription that is gone (deleted, or with its user or project),
      paused, whose user is disabled or no longer a member of its project, or when no search
      provider is configured (logged);
    - the provider's ``ServiceUnavailable`` propagates (the queue retries the job); a request it
      refused (``ProviderError``) ends the run, logged, not retried; the failure is recorded as
      the search's ``last_error`` (a short reason: ``run_failure``) with its time,
      ``last_run_at`` unchanged, so a search the queue gave up on shows why: a refusal at once,
      an outage only on the job's ``last_attempt`` (one the queue will retry may still succeed,
      and the search shows no error meanwhile); a job the queue gave up on for any other
      reason is recorded by ``RecordAbandonedRunHandler``;
    - a run that queried the provider and stored its results (new ones or none) sets
      ``last_run_at`` (the results' ``found_at``) and clears ``last_error``, in the same
      transaction; a run skipped (see the first rule, or found so once the provider answered,
      or its query changed meanwhile: the new query is due at once) changes neither; a run's
      outcome is timed once it holds the search's row, so of two outcomes (runs, failures, a
      give-up) the one committed later has the later time;
    - results are stored unless seen before by this subscription (by ``fingerprint``); the new
      ones, if any, get ONE in-app notification ("N new results for <query>", linking to the
      results) in the same transaction, so a redelivered job (which finds nothing new) never
      notifies twice, and two runs at once store and notify each result once;
    - the first run notifies too: the user asked for these results;
    - with ``notify_email`` and an email sender, one plain-text email lists the new results'
      titles and URLs after the commit; its failure is logged and loses nothing stored (the
      email is not sent again: at most once);
    - the email goes only to a verified address (``email_verified``: an OAuth provider or the
      operator vouched for it); an address nobody checked (a password sign-up) gets the in-app
      notification alone, so that no one can have the server mail a stranger; the API paths
      it names start with the API's ``root_path`` (the in-app notification's link is stored
      without it: the API prefixes it when it is read);
    - each result keeps its rank in the provider's answer, so a run's results list best first.
    """

    def __init__(
        self, uow: UnitOfWork, search: WebSearch | None, clock: Clock, ids: IdGenerator, *,
        email: EmailSender | None = None, results_per_run: int = RESULTS_PER_RUN,
        root_path: str = "",
    ) -> None:  # fmt: skip
        self._uow, self._search, self._clock, self._ids = uow, search, clock, ids
        self._email, self._per_run = email, results_per_run
        # the API's root path (``WHALLI_ROOT_PATH``): the paths an email names start with it
        self._root = root_path.rstrip("/")

    async def execute(self, job: RunSearchSubscription) -> None:
        if self._search is None:
            log.warning(
                "Search %s not run: no web search provider is configured.", job.subscription_id
            )
            return
        async with self._uow.read_only() as uow:
            subscription = await runnable(uow, job.subscription_id)
        if subscription is None:
            return
        try:
            hits = await self._search.search(subscription.query, limit=self._per_run)
        except ProviderError as e:
            log.error("Search %s failed, not retried: %s", subscription.id, e.message)
            await self._record_failure(subscription.id, e)
            return
        except ServiceUnavailable as e:
            if not job.last_attempt:
                raise
            try:
                await self._record_failure(subscription.id, e)
            except Exception:  # the provider's error (and its retry_after) is what the queue needs
                log.exception("The failure of search %s was not recorded.", subscription.id)
            raise
        async with self._uow as uow:
            # the row held before the clock is read: two runs of one search (or a run and a
            # give-up recorded meanwhile) take turns, and the later commit has the later time
            current = await runnable(uow, subscription.id, lock=True)
            if current is None:
                return
            if current.query != subscription.query:  # the hits answer the old query
                log.info("Search %s not stored: its query changed; the new one is due.", current.id)
                return
            now = self._clock.now()
            await uow.searches.record_run(current.id, now)
            new = await uow.searches.add_results(self._results(current, hits, now))
            user = await uow.users.get(current.user_id)
            if new:
                await uow.notifications.add(self._notification(current, new))
            await uow.commit()
        if not new:
            return
        log.info("Search %s found %d new results.", current.id, len(new))
        if current.notify_email and self._email is not None:
            if user.email_verified:
                await self._send(user, current, new)
            else:
                log.info("Search %s not emailed: its user's address is not verified.", current.id)

    async def _record_failure(self, subscription_id: UUID, error: WhalliError) -> None:
        async with self._uow as uow:
            if await runnable(uow, subscription_id, lock=True) is None:  # held, as a run's
                return
            reason = run_failure(error)
            await uow.searches.record_failure(subscription_id, self._clock.now(), reason)
            await uow.commit()

    def _results(
        self, subscription: SearchSubscription, hits: list[SearchHit], now: datetime
    ) -> list[SearchResult]:
        return [
            SearchResult(
                id=self._ids.new_id(),
                subscription_id=subscription.id,
                url=hit.url,
                title=hit.title,
                snippet=hit.snippet,
                fingerprint=fingerprint(hit.url),
                found_at=now,
                rank=rank,
            )
            for rank, hit in enumerate(hits)
        ]

    def _notification(
        self, subscription: SearchSubscription, new: list[SearchResult]
    ) -> Notification:
        titles = [r.title or r.url for r in new[:_BODY_TITLES]]
        more = len(new) - len(titles)
        body = "\n".join(titles) + (f"\n…and {more} more" if more > 0 else "")
        return Notification(
            id=self._ids.new_id(), user_id=subscription.user_id, kind=NOTIFICATION_KIND,
            title=headline(len(new), subscription.query), body=body,
            link=results_link(subscription.id), created_at=self._clock.now(),
        )  # fmt: skip

    async def _send(
        self, user: User, subscription: SearchSubscription, new: list[SearchResult]
    ) -> None:
        assert self._email is not None
        lines = [f"{headline(len(new), subscription.query)}:", ""]
        for result in new:
            lines += [result.title or result.url, result.url, ""]
        lines.append(
            "You get this email because of your recurring search. Turn these emails off with "
            f'PATCH {self._root}/api/searches/{subscription.id} {{"notifyEmail": false}}.'
        )
        message = EmailMessage(
            to=user.email, subject=headline(len(new), subscription.query), text="\n".join(lines)
        )
        try:
            await self._email.send(message)
        except Exception:  # the results and the notification are committed: nothing is lost
            log.exception("The email of search %s was not sent.", subscription.id)
