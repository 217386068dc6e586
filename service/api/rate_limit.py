"""Per API key rate limits: a token bucket per configured key, in each worker process.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; each model listing or inference request
takes one, checked right after the API key and before the body is read, so a client over its rate costs
a header check, not a body read. Buckets are indexed by the key's position in AE_API_KEYS, made once at
start-up: memory is bounded by the number of configured keys, and the key itself is never stored,
logged or used as a metric label. Each worker process keeps its own buckets, so with N workers a key
gets up to N times the rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from fastapi import Request

from service.config import Settings
from service.errors import RateLimitedError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class TokenBucket:
    """`burst` tokens at most, refilled continuously at `rate_per_s`; starts full."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a bucket needs a positive rate and a size of at least 1, not {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> float:
        """Take a token at time `now`: 0.0 when there was one, else the seconds until there will be one."""
        # A clock that stepped back (it should not: monotonic) refills nothing rather than draining.
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        self._updated = max(now, self._updated)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


def retry_after_seconds(wait_s: float) -> int:
    """`Retry-After` is whole seconds: round up, and never 0 (which would invite an immediate retry)."""
    return max(1, math.ceil(wait_s))


class RateLimiter:
    """One bucket per configured API key, addressed by the key's index in AE_API_KEYS."""

    def __init__(self, rate_per_s: float, burst: int, keys: int, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        now = clock()
        self._buckets = [TokenBucket(rate_per_s, burst, now) for _ in range(keys)]

    def check(self, key_index: int) -> None:
        """Take a token from the key's bucket, or raise 429 `rate_limited` with `Retry-After`."""
        wait_s = self._buckets[key_index].take(self._clock())
        if wait_s > 0:
            retry_after = retry_after_seconds(wait_s)
            # The key's index, never the key: logs are read by more people than hold the keys.
            logger.debug("API key #%d over its rate limit, retry after %d s", key_index, retry_after)
            raise RateLimitedError(
                f"this API key is over its rate limit; retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


def rate_limiter_for(settings: Settings, clock: Clock = time.monotonic) -> RateLimiter | None:
    """The limiter the settings ask for; None when there is none (off, or no API keys to count by)."""
    if settings.rate_limit_per_s <= 0:
        return None
    if not settings.api_keys:
        # Counting by client address instead would count a proxy's or load balancer's address for all
        # its clients, and would need a table that grows with the addresses seen.
        logger.warning(
            "AE_RATE_LIMIT_PER_S is set but AE_API_KEYS is empty: rate limits are per API key, so none applies"
        )
        return None
    burst = settings.rate_limit_burst or max(1, math.ceil(settings.rate_limit_per_s))
    return RateLimiter(settings.rate_limit_per_s, burst, len(settings.api_keys), clock)


def check_rate_limit(request: Request, key_index: int | None) -> None:
    """429 when the key (`check_api_key`'s index) is over its rate; nothing without keys or limits."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None and key_index is not None:
        limiter.check(key_index)
