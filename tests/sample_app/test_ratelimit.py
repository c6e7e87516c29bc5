"""The per-client token bucket: bursts, refill, and a bounded table of clients."""

from __future__ import annotations

import pytest

from sample_app import ratelimit
from sample_app.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refused_then_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.retry_after("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.retry_after("a") == 0.5
    assert limiter.retry_after("b") == 0.0  # per client
    clock.now = 0.5
    assert limiter.retry_after("a") == 0.0


def test_client_table_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "PRUNE_ABOVE", 100)
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    for n in range(101):  # one request each from many addresses
        limiter.retry_after(f"10.0.0.{n}")
    clock.now = 10.0  # every bucket has refilled: nothing worth keeping
    limiter.retry_after("10.0.1.1")
    assert len(limiter._buckets) <= 2
