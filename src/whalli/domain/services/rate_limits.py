"""Use case: the API's request budgets and login-attempt limits, counted by the RateLimiter port."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import unicodedata
from collections.abc import Awaitable
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidEmail, RateLimited, ServiceUnavailable
from whalli.domain.model.users import normalize_email
from whalli.ports.rate_limiter import RateDecision, RateLimiter


class RateLimit(Value, frozen=True, kw_only=True):
    limit: int
    window_seconds: int


class RateLimitPolicy(Value, frozen=True, kw_only=True):
    per_user: RateLimit = RateLimit(limit=100, window_seconds=60)
    per_ip: RateLimit = RateLimit(limit=20, window_seconds=60)
    login_per_account_ip: RateLimit = RateLimit(limit=5, window_seconds=60)
    login_per_ip: RateLimit = RateLimit(limit=30, window_seconds=900)
    reset_per_account: RateLimit = RateLimit(limit=5, window_seconds=3600)
    reset_per_ip: RateLimit = RateLimit(limit=10, window_seconds=900)
    verification_per_account: RateLimit = RateLimit(limit=5, window_seconds=3600)
    fail_open: bool = True
    enabled: bool = True


class RequestLimits:
    """Decide whether a request, or a login attempt, may proceed.

    Rules:
    - an authenticated request counts against its user's budget, any other against its client
      IP's (an IPv6 client counts by its /64, which one subscriber usually holds whole);
    - a login attempt counts against its (account, IP) pair, so guessing one account's password
      is slow, and against its IP, so spraying many accounts is slow too; the account alone is
      never limited, so an attacker elsewhere cannot lock its owner out;
    - a password reset request counts against its address, which bounds the emails sent to
      one mailbox (whether an account holds it or not: a refusal tells nothing), and against
      its IP;
    - a refused login or reset raises ``RateLimited`` with the seconds to wait; requests get
      the decision
      and the entrypoint answers 429 (it also reports the budget on every response);
    - when the store is unreachable the check fails open (an unmetered allowed decision) or,
      with ``fail_open=False``, raises ``ServiceUnavailable``;
    - accounts are keyed by a hash of the normalized email, so no address is stored.
    """

    def __init__(self, limiter: RateLimiter, policy: RateLimitPolicy) -> None:
        self._limiter = limiter
        self.policy = policy

    def check_request(
        self, principal_user_id: UUID | None, client_ip: str
    ) -> Awaitable[RateDecision]:
        """The request's decision. The count starts at this call where the limiter sends it
        at once (``RateLimiter.hit``), so a caller can run it beside other work without a
        task; awaiting gives the decision. A limiter's future gives a future, which may be
        dropped unawaited (the request is counted all the same); any other awaitable gives a
        coroutine, to be awaited."""
        if principal_user_id is not None:
            key, rule = f"user:{principal_user_id}", self.policy.per_user
        else:
            key, rule = f"ip:{_ip_key(client_ip)}", self.policy.per_ip
        if not self.policy.enabled:
            settled: asyncio.Future[RateDecision] = asyncio.get_running_loop().create_future()
            settled.set_result(_unmetered(rule))
            return settled
        hit = self._limiter.hit(key, rule.limit, rule.window_seconds)
        if not isinstance(hit, asyncio.Future):
            return self._decided(hit, rule)
        decided: asyncio.Future[RateDecision] = hit.get_loop().create_future()
        hit.add_done_callback(functools.partial(self._settle, decided, rule))
        return decided

    async def refund_request(self, principal_user_id: UUID) -> None:
        """Take back a request counted against a user's budget that was not theirs after all
        (a token of theirs refused: an ended session's, replayed), so nobody can spend a
        user's budget with a credential the user already revoked. Best effort."""
        if not self.policy.enabled:
            return
        with contextlib.suppress(ServiceUnavailable):
            await self._limiter.refund(f"user:{principal_user_id}")

    async def _decided(self, hit: Awaitable[RateDecision], rule: RateLimit) -> RateDecision:
        try:
            return await hit
        except ServiceUnavailable:
            if self.policy.fail_open:
                return _unmetered(rule)
            raise

    def _settle(
        self,
        decided: asyncio.Future[RateDecision],
        rule: RateLimit,
        hit: asyncio.Future[RateDecision],
    ) -> None:
        """``hit``'s outcome as ``decided``'s, failing open as ``_decided`` does."""
        error = None if hit.cancelled() else hit.exception()
        if decided.done():  # its caller left
            return
        if hit.cancelled():
            decided.cancel()
        elif isinstance(error, ServiceUnavailable) and self.policy.fail_open:
            decided.set_result(_unmetered(rule))
        elif error is not None:
            decided.set_exception(error)
            decided.exception()  # retrieved: a caller that left does not warn at GC
        else:
            decided.set_result(hit.result())

    async def check_login(self, email: str, client_ip: str) -> RateDecision:
        ip = _ip_key(client_ip)
        return await self._counted(
            (f"login:acct:{_account_key(email)}:{ip}", self.policy.login_per_account_ip),
            (f"login:ip:{ip}", self.policy.login_per_ip),
        )

    async def check_password_reset(self, email: str, client_ip: str) -> RateDecision:
        return await self._counted(
            (f"reset:acct:{_account_key(email)}", self.policy.reset_per_account),
            (f"reset:ip:{_ip_key(client_ip)}", self.policy.reset_per_ip),
        )

    async def check_email_verification(self, user_id: UUID) -> RateDecision:
        """A verification email asked for by a signed-in account, counted per account."""
        return await self._counted((f"verify:acct:{user_id}", self.policy.verification_per_account))

    async def _counted(self, *counted: tuple[str, RateLimit]) -> RateDecision:
        """Count each key under its rule; ``RateLimited`` if any is over (the longest wait)."""
        first_rule = counted[0][1]
        if not self.policy.enabled:
            return _unmetered(first_rule)
        # All counted concurrently: the caller waits for one round trip, not several.
        results = await asyncio.gather(
            *(self._limiter.hit(key, rule.limit, rule.window_seconds) for key, rule in counted),
            return_exceptions=True,
        )
        decisions: list[RateDecision] = []
        for result in results:
            if isinstance(result, ServiceUnavailable):
                if not self.policy.fail_open:
                    raise result
                return _unmetered(first_rule)
            if isinstance(result, BaseException):
                raise result
            decisions.append(result)
        refused = [d for d in decisions if not d.allowed]
        if refused:
            raise RateLimited(retry_after=max(d.reset_seconds for d in refused))
        return min(decisions, key=lambda d: (d.remaining, -d.reset_seconds))


def _unmetered(rule: RateLimit) -> RateDecision:
    return RateDecision(
        allowed=True,
        limit=rule.limit,
        remaining=rule.limit,
        reset_seconds=rule.window_seconds,
        metered=False,
    )


def _ip_key(client_ip: str) -> str:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:64] or "unknown"  # not an address (e.g. a unix socket peer)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _account_key(email: str) -> str:
    """The account a sign-in names, as the sign-in finds it (``normalize_email``: a fullwidth or
    otherwise respelled address is the same account, with the same budget)."""
    try:
        canonical = normalize_email(email)
    except InvalidEmail:
        canonical = unicodedata.normalize("NFKC", email).strip().casefold()
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
