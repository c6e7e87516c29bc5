"""A per-client token bucket, for limits the app must enforce without nginx in front."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fastapi import HTTPException, Request, status

# Above this many tracked clients, buckets that have refilled are forgotten: the table
# is bounded by the clients active within one refill period, not by all clients ever.
PRUNE_ABOVE = 10_000


class RateLimiter:
    """`rate` requests per second per key, with bursts of up to `burst`."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def retry_after(self, key: str) -> float:
        """0 if the request may go ahead now (and count it), else seconds to wait."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > PRUNE_ABOVE:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


def client_key(request: Request) -> str:
    """The client's address (behind nginx, uvicorn takes it from X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"


def enforce(limiter: RateLimiter, request: Request) -> None:
    """Raise 429 with Retry-After when this client is over the limit."""
    wait = limiter.retry_after(client_key(request))
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many requests: slow down",
            headers={"Retry-After": str(math.ceil(wait))},
        )
