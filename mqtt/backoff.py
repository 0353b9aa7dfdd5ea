"""How long the lamp waits before trying the broker again: exponential backoff with jitter.

paho's own reconnect backoff has no jitter, so after a broker restart every lamp would knock at
the same instants; each delay here is drawn uniformly between ``minimum`` and a ceiling that
starts at twice ``minimum`` and doubles with every failed attempt up to ``maximum`` ("full
jitter", floored at ``minimum``). The first delay is jittered too: a broker restart drops every
lamp at the same moment, and a first retry of exactly ``minimum`` brought them all back in the
same few milliseconds (tests/faults, the reconnect storm).
Pure: the random source is injected, so tests can seed it.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive reconnect attempts; ``reset()`` after a connection that held."""

    def __init__(self, *, minimum: float, maximum: float, rng: random.Random) -> None:
        if minimum < 0 or maximum < minimum:
            raise ValueError(
                f"reconnect delays need 0 <= minimum <= maximum, got {minimum} and {maximum}"
            )
        self._minimum = minimum
        self._maximum = maximum
        self._rng = rng
        self._attempts = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failed attempt."""
        # Capped exponent: 2**64 times any sane minimum is far past every maximum.
        ceiling = min(self._maximum, self._minimum * 2 ** min(self._attempts + 1, 64))
        self._attempts += 1
        return self._rng.uniform(self._minimum, ceiling)

    def reset(self) -> None:
        self._attempts = 0
