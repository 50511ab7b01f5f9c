"""Whether the message a worker runs now is its last attempt: if it fails, no retry follows.

Dramatiq's ``Retries`` middleware counts a message's failed attempts in
``message.options["retries"]`` and fails it for good once that count reaches the message's,
the actor's or the middleware's ``max_retries``; this reads the same numbers before the attempt.
The message comes from the ``CurrentMessage`` middleware (``create_broker`` adds it), which
Dramatiq sets for async actors too (their task runs in a copy of the worker thread's context).
"""

from __future__ import annotations

from typing import Any

from dramatiq.broker import Broker
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage, Retries


def is_last_attempt(broker: Broker, message: Message[Any] | None) -> bool:
    """True unless the broker will retry ``message`` if this attempt fails.

    Anything it cannot tell (no message, no ``Retries`` middleware, a ``retry_when`` predicate
    deciding instead of a count) is a last attempt: a failure is then recorded, as it would be
    without retries.
    """
    retries = next((m for m in broker.middleware if isinstance(m, Retries)), None)
    if message is None or retries is None:
        return True
    actor_options = broker.get_actor(message.actor_name).options
    if actor_options.get("retry_when", retries.retry_when) is not None:
        return True
    limit = message.options.get(
        "max_retries", actor_options.get("max_retries", retries.max_retries)
    )
    if limit is None:
        return False
    done: int = message.options.get("retries", 0)
    return bool(done >= limit)


def current_is_last_attempt(broker: Broker) -> bool:
    """:func:`is_last_attempt` of the message the calling actor runs."""
    return is_last_attempt(broker, CurrentMessage.get_current_message())
