from __future__ import annotations

import uuid
from collections.abc import Awaitable

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.rate_limiter import InMemoryRateLimiter
from whalli.domain.model.errors import RateLimited, ServiceUnavailable
from whalli.domain.services.rate_limits import RateLimit, RateLimitPolicy, RequestLimits
from whalli.ports.rate_limiter import RateDecision, RateLimiter

POLICY = RateLimitPolicy(
    per_user=RateLimit(limit=3, window_seconds=60),
    per_ip=RateLimit(limit=2, window_seconds=60),
    login_per_account_ip=RateLimit(limit=2, window_seconds=60),
    login_per_ip=RateLimit(limit=4, window_seconds=900),
)


class DownRateLimiter(RateLimiter):
    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        raise ServiceUnavailable("redis: connection failed")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limits(clock: ManualClock) -> RequestLimits:
    return RequestLimits(InMemoryRateLimiter(clock), POLICY)


async def test_an_authenticated_request_counts_against_its_user_not_its_ip(
    limits: RequestLimits,
) -> None:
    user = uuid.uuid4()
    decisions = [await limits.check_request(user, "203.0.113.1") for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].limit == 3
    assert (await limits.check_request(None, "203.0.113.1")).remaining == 1
    assert (await limits.check_request(uuid.uuid4(), "203.0.113.1")).allowed is True


async def test_an_anonymous_request_counts_against_its_client_ip(limits: RequestLimits) -> None:
    decisions = [await limits.check_request(None, "203.0.113.1") for _ in range(3)]

    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 1), (True, 0), (False, 0)]
    assert (await limits.check_request(None, "203.0.113.2")).allowed is True


async def test_ipv6_clients_of_one_slash_64_share_a_budget(limits: RequestLimits) -> None:
    await limits.check_request(None, "2001:db8:1:2::1")
    await limits.check_request(None, "2001:db8:1:2:ffff::9")

    assert (await limits.check_request(None, "2001:db8:1:2::abcd")).allowed is False
    assert (await limits.check_request(None, "2001:db8:1:3::1")).allowed is True


async def test_login_attempts_on_one_account_from_one_ip_are_refused_with_the_wait(
    limits: RequestLimits,
) -> None:
    for _ in range(2):
        await limits.check_login("victim@example.com", "198.51.100.7")

    with pytest.raises(RateLimited, match="Too many requests") as refused:
        await limits.check_login("Victim@Example.com ", "198.51.100.7")
    assert refused.value.details == {"retry_after": 60}


async def test_an_attacker_cannot_lock_the_owner_out_from_another_ip(
    limits: RequestLimits,
) -> None:
    for _ in range(2):
        await limits.check_login("victim@example.com", "198.51.100.7")
    with pytest.raises(RateLimited, match="Too many requests"):
        await limits.check_login("victim@example.com", "198.51.100.7")

    owner = await limits.check_login("victim@example.com", "192.0.2.10")

    assert owner.allowed is True


async def test_one_ip_spraying_many_accounts_is_refused_by_its_ip_budget(
    limits: RequestLimits,
) -> None:
    for n in range(4):
        await limits.check_login(f"user{n}@example.com", "198.51.100.7")

    with pytest.raises(RateLimited, match="Too many requests") as refused:
        await limits.check_login("user9@example.com", "198.51.100.7")
    assert refused.value.details == {"retry_after": 900}


async def test_an_allowed_login_reports_the_tighter_of_its_two_budgets(
    limits: RequestLimits,
) -> None:
    decision = await limits.check_login("a@example.com", "198.51.100.7")

    assert (decision.limit, decision.remaining, decision.reset_seconds) == (2, 1, 60)


async def test_login_attempts_are_allowed_again_once_the_window_has_passed(
    limits: RequestLimits, clock: ManualClock
) -> None:
    for _ in range(2):
        await limits.check_login("a@example.com", "198.51.100.7")

    clock.advance(60)

    assert (await limits.check_login("a@example.com", "198.51.100.7")).allowed is True


async def test_an_unreachable_store_lets_requests_and_logins_through_unmetered() -> None:
    limits = RequestLimits(DownRateLimiter(), POLICY)

    request = await limits.check_request(None, "203.0.113.1")
    login = await limits.check_login("a@example.com", "203.0.113.1")

    assert (request.allowed, request.metered) == (True, False)
    assert (login.allowed, login.metered) == (True, False)


async def test_failing_closed_an_unreachable_store_is_service_unavailable() -> None:
    limits = RequestLimits(DownRateLimiter(), RateLimitPolicy(fail_open=False))

    with pytest.raises(ServiceUnavailable, match="redis: connection failed"):
        await limits.check_request(uuid.uuid4(), "203.0.113.1")
    with pytest.raises(ServiceUnavailable, match="redis: connection failed"):
        await limits.check_login("a@example.com", "203.0.113.1")


async def test_disabled_limits_count_nothing(clock: ManualClock) -> None:
    limits = RequestLimits(InMemoryRateLimiter(clock), RateLimitPolicy(enabled=False))

    decisions = [await limits.check_request(None, "203.0.113.1") for _ in range(50)]

    assert all(d.allowed and not d.metered for d in decisions)


class EagerRateLimiter(RateLimiter):
    """Sends its count when called, as the Redis limiter does through the lean client."""

    def __init__(self, answer: Exception | None = None) -> None:
        self.sent: list[str] = []
        self._answer = answer

    def hit(self, key: str, limit: int, window_seconds: int) -> Awaitable[RateDecision]:
        self.sent.append(key)
        return self._decision(limit)

    async def _decision(self, limit: int) -> RateDecision:
        if self._answer is not None:
            raise self._answer
        return RateDecision(allowed=True, limit=limit, remaining=limit - 1, reset_seconds=60)


async def test_a_request_is_counted_when_checked_and_decided_when_awaited() -> None:
    limiter = EagerRateLimiter()
    user = uuid.uuid4()

    pending = limits_for(limiter).check_request(user, "203.0.113.1")

    assert limiter.sent == [f"user:{user}"]  # sent before any await: beside other work
    decision = await pending
    assert decision.metered
    assert decision.remaining == 2


async def test_an_eager_count_that_fails_still_fails_open_when_awaited() -> None:
    limiter = EagerRateLimiter(ServiceUnavailable("redis: connection failed"))

    pending = limits_for(limiter).check_request(None, "203.0.113.1")

    assert limiter.sent == ["ip:203.0.113.1"]
    decision = await pending
    assert decision.allowed
    assert not decision.metered


def limits_for(limiter: RateLimiter) -> RequestLimits:
    return RequestLimits(limiter, POLICY)


async def test_reset_requests_count_per_address_across_ips_and_per_ip_across_addresses(
    clock: ManualClock,
) -> None:
    policy = RateLimitPolicy(
        reset_per_account=RateLimit(limit=2, window_seconds=3600),
        reset_per_ip=RateLimit(limit=3, window_seconds=900),
    )
    limits = RequestLimits(InMemoryRateLimiter(clock), policy)

    # one mailbox from many places: its own budget (spelt any way) bounds the emails it gets
    await limits.check_password_reset("ada@example.com", "203.0.113.1")
    await limits.check_password_reset(" ADA@Example.com", "203.0.113.2")
    with pytest.raises(RateLimited, match="Too many") as refused:
        await limits.check_password_reset("ada@example.com", "203.0.113.3")
    assert refused.value.details["retry_after"] == 3600
    # one place asking for many mailboxes: its IP's budget
    for n in range(3):
        await limits.check_password_reset(f"user{n}@example.com", "198.51.100.7")
    with pytest.raises(RateLimited, match="Too many"):
        await limits.check_password_reset("user9@example.com", "198.51.100.7")
    # ...which is not the login's
    await limits.check_login("user9@example.com", "198.51.100.7")
    clock.advance(3600)
    await limits.check_password_reset("ada@example.com", "203.0.113.3")
