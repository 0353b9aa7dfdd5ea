"""Glows the broker accepted and dropped — "no matching subscribers" (PUBACK 0x10) — or refused
for now: kept per lamp, in order, with their expiry, and sent again when the lamp is back.

Found by tests/faults (RELIABILITY.md, scenario 1d): a broker killed before its periodic save
(about every 2 s) forgets the sessions of lamps that connected since; when a lamp comes back on a
new session, a glow the relay publishes before the lamp has subscribed again goes nowhere. The
broker says so in its PUBACK (reason 0x10, a *success* code), and paho reports it; before this,
the relay ignored it and the glow was lost. The same happens to a lamp whose session expired.

The rule (mqtt/reasons.py says which PUBACK codes mean what):

- A glow answered ``NO_SUBSCRIBERS`` or ``RETRY`` is kept for its lamp. While a lamp has glows
  kept (or being sent again), newer glows for it queue behind them instead of going out, so
  they do not arrive first; glows are ordered by when the relay forwarded them.
- They go out again, all of them, when the lamp's availability says ``online`` (a lamp
  publishes it right after subscribing, on the same connection, so the broker has its
  subscriptions by then); and, as a safety net, the oldest alone after a backoff (1 s doubling
  to a minute), the rest following once it is taken.
- A glow past its expiry (the relay's glow expiry, counted from when it was first forwarded) is
  no longer worth showing: dropped, counted. It is sent again with what is left of its expiry,
  so the lamp still ages it right (device/incoming.py, ``_waited``).
- Bounded: at most ``per_lamp`` glows per lamp and ``total`` in all; past that the oldest is
  dropped, counted. A lamp coalesces a backlog into one glow anyway (device/core.py).

What is kept lives in the relay's memory: a relay that stops or dies loses it (RELIABILITY.md,
known limits). Pure and single-threaded (the relay's worker); ``clock`` is monotonic seconds.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["GlowsWaiting", "WaitingGlow"]


@dataclass(frozen=True, slots=True, order=True)
class WaitingGlow:
    """One glow on its way to ``lamp_id``; ``order`` is when the relay forwarded it."""

    order: int
    lamp_id: str = field(compare=False)
    payload: bytes = field(compare=False)
    expires_at: float = field(compare=False)  # monotonic


@dataclass(slots=True)
class _Lamp:
    kept: list[WaitingGlow] = field(default_factory=list)  # sorted by order
    sending: int = 0  # glows of the current round not yet answered
    bounced: bool = False  # one of the current round was answered 0x10 (or refused for now)
    retry_at: float | None = None
    retries: int = 0  # rounds in a row that bounced: the backoff's exponent


class GlowsWaiting:
    """See the module docstring."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        per_lamp: int = 100,
        total: int = 10_000,
        retry_min_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
    ) -> None:
        if per_lamp < 1 or total < per_lamp:
            raise ValueError(f"need 1 <= per_lamp <= total, got {per_lamp} and {total}")
        self._clock = clock
        self._per_lamp = per_lamp
        self._total = total
        self._retry_min = retry_min_seconds
        self._retry_max = retry_max_seconds
        self._order = itertools.count()
        self._lamps: dict[str, _Lamp] = {}
        self._count = 0
        self._ready: set[str] = set()  # lamps to send everything to now (online, or taken)
        self._dropped = 0

    def __len__(self) -> int:
        """Glows kept (not counting those being sent again)."""
        return self._count

    def new(self, lamp_id: str, payload: bytes, *, expiry_seconds: float) -> WaitingGlow:
        """A glow just forwarded to ``lamp_id``, not yet published."""
        return WaitingGlow(next(self._order), lamp_id, payload, self._clock() + expiry_seconds)

    def must_wait(self, glow: WaitingGlow) -> bool:
        """Whether ``glow`` must queue behind glows kept for its lamp (then it is kept: call
        ``dropped`` after it for the bound's victims)."""
        lamp = self._lamps.get(glow.lamp_id)
        if lamp is None or not (lamp.kept or lamp.sending):
            return False
        self._keep(lamp, glow)
        return True

    def answered(self, glow: WaitingGlow, *, kept: bool, resent: bool) -> None:
        """The broker answered ``glow``: ``kept`` if it must be sent again (0x10, or refused for
        now); ``resent`` if it went out in a round of ``take``."""
        lamp = self._lamps.get(glow.lamp_id)
        if lamp is None:
            if not kept:
                return
            lamp = self._lamps[glow.lamp_id] = _Lamp()
        if kept:
            self._keep(lamp, glow)
            lamp.bounced = True
        if resent:
            lamp.sending = max(0, lamp.sending - 1)
        if lamp.sending:
            return  # the round's other answers decide
        if lamp.bounced and glow.lamp_id in self._ready:
            lamp.bounced = False  # back online meanwhile: everything goes now
        elif lamp.bounced:
            lamp.bounced = False
            if lamp.retry_at is None:
                delay = min(self._retry_max, self._retry_min * 2 ** min(lamp.retries, 32))
                lamp.retries += 1
                lamp.retry_at = self._clock() + delay
        elif lamp.kept:
            self._ready.add(glow.lamp_id)  # the round was taken: the rest follows now
        else:
            del self._lamps[glow.lamp_id]

    def online(self, lamp_id: str) -> None:
        """``lamp_id`` said it is online: it has subscribed; everything kept goes now."""
        lamp = self._lamps.get(lamp_id)
        if lamp is not None and (lamp.kept or lamp.sending):
            lamp.retries = 0
            self._ready.add(lamp_id)

    def take(self) -> tuple[list[WaitingGlow], int]:
        """Glows to send again now, in order (every one kept for a lamp that is back; the
        oldest alone where only the backoff ran out), and how many expired meanwhile (they
        are dropped). Each one taken must be ``answered`` with ``resent=True``."""
        now = self._clock()
        taken: list[WaitingGlow] = []
        expired = 0
        for lamp_id, lamp in list(self._lamps.items()):
            ready = lamp_id in self._ready
            due = lamp.retry_at is not None and lamp.retry_at <= now
            if lamp.sending or not (ready or due):
                continue  # a lamp back while a round is out: its answers decide, then this
            self._ready.discard(lamp_id)
            lamp.retry_at = None
            alive = [glow for glow in lamp.kept if glow.expires_at > now]
            expired += len(lamp.kept) - len(alive)
            count = len(alive) if ready else min(1, len(alive))
            taken += alive[:count]
            lamp.kept = alive[count:]
            lamp.sending = count
            if not lamp.kept and not lamp.sending:
                del self._lamps[lamp_id]
        self._ready &= self._lamps.keys()
        self._count = sum(len(lamp.kept) for lamp in self._lamps.values())
        return taken, expired

    def next_due(self) -> float | None:
        """When ``take`` has something next (monotonic), None if nothing is waiting for a time."""
        if self._ready:
            return self._clock()
        return min(
            (lamp.retry_at for lamp in self._lamps.values() if lamp.retry_at is not None),
            default=None,
        )

    def dropped(self) -> int:
        """How many glows the bounds pushed out since the last call (oldest first)."""
        dropped, self._dropped = self._dropped, 0
        return dropped

    def _keep(self, lamp: _Lamp, glow: WaitingGlow) -> None:
        bisect.insort(lamp.kept, glow)
        self._count += 1
        if len(lamp.kept) > self._per_lamp:
            del lamp.kept[0]
            self._count -= 1
            self._dropped += 1
        while self._count > self._total:
            oldest = min(
                (candidate for candidate in self._lamps.values() if candidate.kept),
                key=lambda candidate: candidate.kept[0],
            )
            del oldest.kept[0]
            self._count -= 1
            self._dropped += 1
