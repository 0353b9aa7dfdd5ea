"""Pairs of lamps for the burst benchmarks: a sending lamp and a receiving lamp per group.

One touch gives exactly one glow (mutual touches cannot happen: receivers never touch), so the
receiving side's count of distinct touch ids is the number forwarded, and anything above it a
duplicate.
"""

from __future__ import annotations

from bench.burst import BurstOutcome, Counter, send_burst
from bench.site import BenchSite
from bench.swarm import Swarm, SwarmClient

__all__ = ["LAMP_SESSION_EXPIRY", "PairedLamps"]

LAMP_SESSION_EXPIRY = 2 * 24 * 3600
"""A real lamp's (DeviceSettings' default): the broker keeps and persists its session."""


class PairedLamps:
    """``pairs`` sender/receiver groups on ``site``, connected through ``swarm``."""

    def __init__(self, site: BenchSite, swarm: Swarm, *, pairs: int) -> None:
        self.site = site
        self.swarm = swarm
        senders = [f"send-{index:04d}" for index in range(pairs)]
        receivers = [f"recv-{index:04d}" for index in range(pairs)]
        site.add_lamps(senders + receivers)
        site.pair([list(pair) for pair in zip(senders, receivers, strict=True)])
        self.counter = Counter()

        def on_glow(topic: str, payload: bytes, at: float) -> None:
            self._handler(topic, payload, at)

        self._handler = self.counter.glow_handler()
        swarm.connect_all(
            [(lamp_id, site.passwords[lamp_id], lamp_id) for lamp_id in receivers],
            subscribe=lambda lamp_id: [site.topics.glow(lamp_id)],
            on_message=lambda _lamp_id: on_glow,
            session_expiry=LAMP_SESSION_EXPIRY,
        )
        # paho's inflight window lifted, as ARCHITECTURE.md's "Known traps" say a tuned client does.
        self.senders: list[SwarmClient] = swarm.connect_all(
            [(lamp_id, site.passwords[lamp_id], lamp_id) for lamp_id in senders],
            max_inflight=0,
            session_expiry=LAMP_SESSION_EXPIRY,
        )

    def burst(
        self, touches: int, *, window: int | None, stall_seconds: float = 15.0
    ) -> BurstOutcome:
        """Send a burst through whatever relays run now; count the glows that come back."""
        counter = Counter()
        self.swarm.run(lambda: self._use(counter))
        started, sent = send_burst(
            self.swarm,
            self.senders,
            topics=self.site.topics,
            touches=touches,
            progress=lambda: counter.count,
            window=window,
            stall_seconds=stall_seconds,
        )
        return counter.outcome(sent=sent, started=started)

    def _use(self, counter: Counter) -> None:
        self.counter = counter
        self._handler = counter.glow_handler()
