"""A token bucket per lamp, so one flooding lamp is dropped without slowing anyone else.

Each lamp has a bucket holding up to ``burst`` tokens that refills at ``per_second`` tokens per
second; a touch takes one token or is refused. Buckets are independent: a lamp that floods only
empties its own. Time comes from the injected clock (seconds, monotonic), so tests step it.

Memory stays bounded: buckets that have refilled completely carry no information (a new bucket
is full too), so they are forgotten once there are more than ``max_tracked`` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Not thread-safe: the relay calls it from its single worker thread."""

    def __init__(
        self,
        *,
        per_second: float,
        burst: int,
        clock: Callable[[], float],
        max_tracked: int = 10_000,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError(
                f"rate limit needs per_second > 0 and burst >= 1 (got {per_second}, {burst})"
            )
        self._per_second = per_second
        self._burst = float(burst)
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; False (and nothing taken) if it is empty."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_tracked:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(tokens=self._burst, updated=now)
        else:
            # max(0, …): a clock that steps back must not drain the bucket.
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._per_second)
            bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_full(self, now: float) -> None:
        refill_time = self._burst / self._per_second
        for key in [k for k, b in self._buckets.items() if now - b.updated >= refill_time]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
