"""Summaries of latency samples: nearest-rank percentiles, no interpolation, no numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LatencySummary", "percentile", "summarize"]


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least ``fraction`` at or below it.

    Nearest rank (not interpolation) so that p99 of 100 samples is the 99th slowest real touch,
    never a value that no touch took.
    """
    if not samples:
        raise ValueError(
            "no samples: a percentile of nothing is undefined; measure something first"
        )
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """p50 / p99 / max of a set of latencies, in seconds, and how many there were."""

    count: int
    p50: float
    p99: float
    max: float

    def as_ms(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_ms": round(self.p50 * 1000, 3),
            "p99_ms": round(self.p99 * 1000, 3),
            "max_ms": round(self.max * 1000, 3),
        }


def summarize(samples: Sequence[float]) -> LatencySummary:
    return LatencySummary(
        count=len(samples),
        p50=percentile(samples, 0.50),
        p99=percentile(samples, 0.99),
        max=max(samples),
    )
