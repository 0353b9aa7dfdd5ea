"""Sending a burst of touches through the broker and counting what comes out, exactly.

Used by the throughput, scale-out and one-hop baseline measurements. Sender lamps publish their
share of the burst as valid ``Touch`` payloads (each lamp its own ``stream``, ``seq`` counting
up); the receiving side records every touch id it sees, so loss and duplicates are counted, not
inferred from a rate. ``window`` bounds the touches in flight end to end (sent, not yet seen):
``None`` sends everything at once (an open-loop burst), a number keeps the broker's queue for
the relay below Mosquitto's ``max_queued_messages`` (see BENCHMARKS.md for why that matters).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.swarm import Handler, Swarm, SwarmClient
from touchlamp.protocol import Topics, Touch, encode

__all__ = ["BurstOutcome", "Counter", "send_burst", "touch_payloads"]

_SETTLE = 0.5
_CHUNK = 200  # touches handed to paho per loop turn, so reading keeps up with writing


@dataclass(slots=True)
class Counter:
    """Touch ids seen on the receiving side. Fed from one thread (the swarm's or a reader's)."""

    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    first_at: float | None = None
    last_at: float | None = None

    def record(self, touch: str, at: float) -> None:
        if touch in self.seen:
            self.duplicates += 1
            return
        self.seen.add(touch)
        if self.first_at is None:
            self.first_at = at
        self.last_at = at

    @property
    def count(self) -> int:
        return len(self.seen)

    def outcome(self, *, sent: int, started: float) -> BurstOutcome:
        finished = self.last_at if self.last_at is not None else started
        return BurstOutcome(
            sent=sent,
            received=len(self.seen),
            duplicates=self.duplicates,
            seconds=max(0.0, finished - started),
        )

    def glow_handler(self) -> Handler:
        """A swarm message handler for glow payloads (the touch id is their ``touch``)."""

        def handle(_topic: str, payload: bytes, at: float) -> None:
            self.record(json.loads(payload)["touch"], at)

        return handle


@dataclass(frozen=True, slots=True)
class BurstOutcome:
    sent: int
    received: int
    duplicates: int
    seconds: float  # first publish to last touch seen

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
        }


def touch_payloads(lamp_id: str, count: int, *, color: str) -> list[tuple[str, bytes]]:
    """``(touch id, payload)`` for ``count`` touches of one lamp, on a fresh random stream."""
    stream = random.randrange(2**32)
    now_ms = int(time.time() * 1000)
    return [
        (
            f"{lamp_id}:{stream}:{seq}",
            encode(Touch(seq=seq, stream=stream, color=color, ts=now_ms)),
        )
        for seq in range(count)
    ]


def send_burst(
    swarm: Swarm,
    senders: list[SwarmClient],
    *,
    topics: Topics,
    touches: int,
    progress: Callable[[], int],
    window: int | None,
    stall_seconds: float = 15.0,
) -> tuple[float, int]:
    """Publish ``touches`` spread evenly over ``senders``; wait until ``progress()`` (touches
    seen on the receiving side) reaches them all, or stays put for ``stall_seconds``.

    Returns when the first touch was handed to paho (``time.monotonic()``) and how many were
    sent (``touches`` rounded down to a multiple of the number of senders).
    """
    per_sender = touches // len(senders)
    plan: list[tuple[SwarmClient, str, bytes]] = []
    for sender in senders:
        topic = topics.touch(sender.name)
        plan.extend(
            (sender, topic, payload)
            for _touch, payload in touch_payloads(sender.name, per_sender, color="#ff3300")
        )
    # Interleave the lamps, as many lamps touching at once would.
    random.shuffle(plan)
    total = len(plan)
    position = 0
    started = [0.0]

    def pump() -> None:
        nonlocal position
        limit = total if window is None else min(total, progress() + window)
        end = min(limit, position + _CHUNK)
        while position < end:
            sender, topic, payload = plan[position]
            swarm.publish(sender, topic, payload)
            position += 1
        if position < total:
            swarm.call_at(time.monotonic() + (0.0 if position < limit else 0.001), pump)

    def begin() -> None:
        started[0] = time.monotonic()
        pump()

    swarm.call_soon(begin)
    last, last_change = -1, time.monotonic()
    while True:
        seen = progress()
        if seen >= total:
            time.sleep(_SETTLE)  # a duplicate arriving late still counts
            break
        if seen != last:
            last, last_change = seen, time.monotonic()
        elif time.monotonic() - last_change > stall_seconds:
            break  # lost: nothing more is coming
        time.sleep(0.005)
    return started[0], total
