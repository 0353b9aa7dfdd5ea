"""The per-lamp token bucket: a burst, then a steady rate; one lamp never slows another."""

from __future__ import annotations

import pytest

from tests.support.clock import FakeClock
from touchlamp.server.ratelimit import RateLimiter


def test_a_burst_passes_then_the_rate_applies() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=2.0, burst=3, clock=clock)
    assert [limiter.allow("lamp-a") for _ in range(4)] == [True, True, True, False]
    clock.advance(0.49)
    assert not limiter.allow("lamp-a")
    clock.advance(0.01)  # half a second at 2/s: one token back
    assert limiter.allow("lamp-a")
    assert not limiter.allow("lamp-a")


def test_refill_stops_at_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=1.0, burst=2, clock=clock)
    limiter.allow("lamp-a")
    clock.advance(3600)
    assert [limiter.allow("lamp-a") for _ in range(3)] == [True, True, False]


def test_a_flooding_lamp_does_not_limit_another() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=1.0, burst=5, clock=clock)
    refused = sum(not limiter.allow("lamp-flood") for _ in range(1000))
    assert refused == 995
    assert all(limiter.allow("lamp-calm") for _ in range(5))


def test_a_clock_stepping_back_does_not_drain_the_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=1.0, burst=2, clock=clock)
    assert limiter.allow("lamp-a")
    clock.now -= 100
    assert limiter.allow("lamp-a")


def test_full_buckets_are_forgotten_when_many_lamps_are_tracked() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=1.0, burst=1, clock=clock, max_tracked=10)
    for index in range(10):
        limiter.allow(f"lamp-{index:02d}")
    clock.advance(5)  # every bucket has refilled: they carry no information any more
    limiter.allow("lamp-new")
    assert len(limiter) == 1


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="per_second > 0"):
        RateLimiter(per_second=0, burst=1, clock=FakeClock())
