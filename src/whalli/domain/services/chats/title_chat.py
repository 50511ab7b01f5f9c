"""Use case: give a new chat a title written by a model (the ``TitleChat`` job)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from uuid import UUID

import msgspec

from whalli.domain.model.catalog import ModelCatalog, ModelSpec, ensure_model_allowed
from whalli.domain.model.chat_titles import TitlePolicy, clean_title, title_params, title_prompt
from whalli.domain.model.chats import (
    Chat,
    Message,
    MessageRole,
    MessageStatus,
    TokenUsage,
    title_from,
)
from whalli.domain.model.errors import (
    AccountDisabled,
    ChatNotFound,
    ModelNotFound,
    ModelNotInPlan,
    ProviderError,
    ReplyInProgress,
)
from whalli.domain.model.jobs import TitleChat
from whalli.domain.services.chat.context import usage_or_estimate
from whalli.domain.services.chat.requests import completion_request
from whalli.domain.services.chat.streaming import close_stream
from whalli.ports.chat_metrics import ChatMetrics
from whalli.ports.chat_model import ChatModel, StreamDelta, StreamEnd, StreamStart
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork
from whalli.ports.usage import UsageRecord

log = logging.getLogger(__name__)


class TitleChatHandler:
    """Ask a model for a short title of a new chat and set it, unless the user renamed it.

    Rules:
    - only a chat still titled as when the job was queued (``TitleChat.expected_title``, its
      first message's title; ``title_from`` of its first message for a job without one) gets
      one: a chat that is gone, that its user renamed, or whose first reply ended otherwise
      than ``complete`` with text is left alone; so a job delivered again after it succeeded
      does nothing (the title is no longer the expected one); an edit of the first message
      (a regeneration with a new text) is no rename;
    - while the first reply is still being generated (it was regenerated since the job was
      queued), ``ReplyInProgress`` is raised: the queue runs the job again later;
    - the model is the policy's (``WHALLI_CHAT_TITLES``: by default the model that wrote the
      first reply; none with titles off or for a reply of the dev model), taken from the
      catalog as the chat flow does, through the same ``ChatModel`` port; a model without a
      configured provider titles nothing, nor does the reply's model once the owner may no
      longer use it (a plan lowered, an account disabled: skipped; a title model the operator
      chose is theirs to pay);
    - it is sent a short instruction and the first message and reply (each cut to about 2,000
      characters), at a low temperature and few tokens; its answer is cleaned (``clean_title``)
      and an empty one keeps the title;
    - the title is set by compare-and-set against the expected title, so a rename committed
      while the model answered wins; the call's tokens are recorded first, on their own, as a
      usage record of the chat's owner (no message) with their cost, whatever the outcome (a
      title that cannot be stored does not lose them; an answer the provider cut part way is
      charged what it used, as a failed reply is), and counted in the tokens' metrics
      (``ChatMetrics.tokens_used``);
    - a retryable provider error is raised (the queue retries the job); any other is logged
      and the job ends. Each job's outcome is counted (``ChatMetrics.chat_titled``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        catalog: ModelCatalog,
        models: Mapping[str, ChatModel],
        *,
        titles: TitlePolicy,
        clock: Clock,
        ids: IdGenerator,
        metrics: ChatMetrics,
    ) -> None:
        self._uow, self._catalog, self._models, self._titles = uow, catalog, models, titles
        self._clock, self._ids, self._metrics = clock, ids, metrics

    async def execute(self, job: TitleChat) -> None:
        try:
            outcome = await self._title(job.chat_id, job.expected_title)
        except ProviderError as e:
            self._metrics.chat_titled(outcome="failed")
            if e.retryable:
                raise
            log.warning("Chat %s keeps its title: the model failed (%s).", job.chat_id, e.code)
            return
        self._metrics.chat_titled(outcome=outcome)

    async def _title(self, chat_id: UUID, expected: str | None) -> str:
        found = await self._read(chat_id)
        if found is None:
            return "skipped"
        chat, first, reply = found
        automatic = title_from(first.content) if expected is None else expected
        if chat.title != automatic:
            return "kept"  # renamed by its user (or titled already)
        spec = self._spec(reply)
        model = None if spec is None else self._models.get(spec.provider)
        if spec is None or model is None:
            return "skipped"
        if spec.id == reply.model and not await self._may_use(chat.user_id, spec):
            return "skipped"  # the owner's plan lost the reply's model since (or the account)
        text, usage, failure = await self._ask(model, spec, first.content, reply.content)
        if usage.total > 0 or failure is None:
            record = UsageRecord.of(
                usage, id=self._ids.new_id(), user_id=chat.user_id, message_id=None,
                model=spec.id, provider=spec.provider, cost_usd=spec.price(usage), cached=False,
                created_at=self._clock.now(),
            )  # fmt: skip
            async with self._uow.autocommit() as uow:  # one INSERT: paid for, whatever follows
                await uow.usage.add(record)
            self._metrics.tokens_used(
                model=spec.id, provider=spec.provider,
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            )  # fmt: skip
        if failure is not None:
            raise failure
        title = clean_title(text)
        if not title:
            return "kept"
        async with self._uow.autocommit() as uow:  # one compare-and-set UPDATE
            titled = await uow.chats.set_title_if(chat.id, expected=automatic, title=title)
        return "titled" if titled else "kept"

    async def _read(self, chat_id: UUID) -> tuple[Chat, Message, Message] | None:
        """The chat, its first user message and the reply to it; ``None`` when there is
        nothing to title (no chat, or no complete reply with text)."""
        async with self._uow.read_only() as uow:
            try:
                chat = await uow.chats.get(chat_id)
            except ChatNotFound:
                return None
            messages = await uow.chats.list_messages(chat_id)
        users = [i for i, m in enumerate(messages) if m.role is MessageRole.USER]
        if not users:
            return None
        first = messages[users[0]]
        replies = [m for m in messages[users[0] + 1 :] if m.role is MessageRole.ASSISTANT]
        if replies and not replies[0].status.is_final:
            raise ReplyInProgress("The chat's first reply is still being generated.")
        if not replies or replies[0].status is not MessageStatus.COMPLETE:
            return None
        if not replies[0].content.strip():
            return None
        return chat, first, replies[0]

    async def _may_use(self, user_id: UUID, spec: ModelSpec) -> bool:
        """Whether the chat's owner may still use the reply's model (``ensure_model_allowed``:
        an admin may have changed their plan, or disabled them, since the reply)."""
        async with self._uow.read_only() as uow:
            user = await uow.users.get(user_id)
        try:
            ensure_model_allowed(user, spec)
        except (AccountDisabled, ModelNotInPlan):
            return False
        return True

    def _spec(self, reply: Message) -> ModelSpec | None:
        model_id = self._titles.model_for(reply.model, reply.provider)
        if model_id is None:
            return None
        try:
            return self._catalog.get(model_id)
        except ModelNotFound:  # the catalog changed since the reply: nobody to ask
            log.warning("No title: the model %s is not in the catalog.", model_id)
            return None

    @staticmethod
    async def _ask(
        model: ChatModel, spec: ModelSpec, first: str, reply: str
    ) -> tuple[str, TokenUsage, ProviderError | None]:
        """The model's whole answer (text deltas only), its usage (estimated when the
        provider reports none: also of an answer that failed part way, or one the provider
        counted as it began) and the failure that cut it, if one did."""
        messages = title_prompt(first, reply)
        params = title_params(spec.thinks_first)
        # asked once: its prompt is not worth a write to the provider's prompt cache
        request = msgspec.structs.replace(
            completion_request(spec, messages, params), cacheable=False
        )
        parts: list[str] = []
        usage: TokenUsage | None = None  # until the answer ends
        started: TokenUsage | None = None  # the prompt's count as the provider began
        failure: ProviderError | None = None
        events = model.stream(request)
        try:
            async for event in events:
                if isinstance(event, StreamDelta):
                    parts.append(event.text)
                elif isinstance(event, StreamEnd):
                    usage = event.usage
                elif isinstance(event, StreamStart):
                    started = event.usage
        except ProviderError as e:
            failure = e
        finally:
            await close_stream(events)
        text = "".join(parts)
        return text, usage_or_estimate(usage, messages, text, started), failure
