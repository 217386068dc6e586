"""When to send a request again: 503 and 429, after the server's Retry-After, within bounds.

Every operation of the API is a pure function of its body (no request changes server state), so
sending one again is always safe. Only 503 (overloaded, loading, shutting down) and 429 (rate limited)
are retried: they say "not now", every other status says "not this request". The wait is the answer's
Retry-After (seconds or an HTTP date), else an exponential back-off; a bound on attempts and on the
total wait keeps a caller from hanging behind a server that stays down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus

RETRIED_STATUSES = frozenset({HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry 503 and 429 answers.

    `max_attempts` counts the first try (1 turns retries off); `max_total_wait_s` bounds the sum of
    the waits: a Retry-After that would go past it ends the retries at once rather than sleeping in
    vain. Without Retry-After the wait is `backoff_s * 2**retry`, at most `max_delay_s`.
    """

    max_attempts: int = 4
    max_total_wait_s: float = 30.0
    backoff_s: float = 0.5
    max_delay_s: float = 10.0

    def delay(self, status: int, retry_after: float | None, attempt: int, waited_s: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up and raise the error."""
        if status not in RETRIED_STATUSES or attempt >= self.max_attempts:
            return None
        wait = retry_after if retry_after is not None else min(self.backoff_s * 2 ** (attempt - 1), self.max_delay_s)
        if waited_s + wait > self.max_total_wait_s:
            return None
        return wait


NO_RETRIES = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
