"""A model's refusal (OpenAI's ``refusal``: a structured output it declines to give) through the
real app and container (Postgres, Redis) to a loopback OpenAI: kept apart from the answer's
text on /v1, replayed as a refusal from the prompt cache, and shown as the reply's text in a
chat (which has no other place for it)."""

from __future__ import annotations

import uuid

from tests.integration.http.test_chat_flow import Chat, _reply, _text
from tests.integration.http.test_s18_hunt_b import REFUSAL, Greeting, refusal_stream
from tests.integration.http.test_v1_tools import GPT, Providers, providers
from tests.support.fake_providers import Reply
from whalli.domain.model.chats import MessageStatus

__all__ = ["providers"]  # the fixture, shared with the tool tests


async def test_a_refusal_is_cached_and_replayed_as_a_refusal(providers: Providers) -> None:
    providers.openai.script(Reply(chunks=refusal_stream()))
    prompt = [{"role": "user", "content": f"Greet me {uuid.uuid4()}"}]
    answers = []
    for _ in range(2):  # temperature 0: the second is the cache's
        completion = await providers.sdk.chat.completions.parse(
            model=GPT, messages=prompt, response_format=Greeting, temperature=0
        )
        answers.append(completion.choices[0].message)

    assert len(providers.openai.requests) == 1
    for message in answers:
        assert (message.refusal, message.content, message.parsed) == ("".join(REFUSAL), None, None)


async def test_a_refusal_in_a_chat_is_the_replys_text(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=refusal_stream()))

    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"r {uuid.uuid4()}"
    )
    events = await chat.events(started["sessionId"])

    assert events[-1][1] == "done"
    assert _text(events) == "".join(REFUSAL)
    reply = await _reply(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "".join(REFUSAL))
