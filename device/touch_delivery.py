"""The delivery rules for a lamp's touches, from the outbox (device/outbox.py) to a relay.

- **Confirmed, not just acknowledged.** Mosquitto 2.0 sends its PUBACK about a millisecond
  *before* it writes the message to disk, so a broker killed in that millisecond forgets a touch
  it acknowledged. A touch therefore leaves the outbox only once the connection that carried it
  has stayed up ``confirm_seconds`` after the PUBACK (default: two keepalives, the time a dead
  broker takes to be noticed); if the connection ends sooner, the next one sends it again and
  the relay drops the repeat by (lamp, stream, seq). Found by the fault scenarios (tests/faults,
  RELIABILITY.md).
- **"No matching subscribers" is not delivered.** Mosquitto 2.0.11 does not keep shared
  subscriptions over a restart: until the relay reconnects and subscribes again, a touch is
  acknowledged with reason 0x10 and goes nowhere. Such a touch is kept and sent again, alone
  and with backoff, until a relay takes it (or it expires in the outbox, counted); newer ones
  wait behind it, so none overtakes another.
- **One rule for the broker's reason codes** (mqtt/reasons.py): a touch refused for good is
  dropped, loudly; one refused for now waits like one nobody subscribed to.
- Each connection publishes everything still queued, in seq order (``HandedTouches``: what one
  paho client was given): paho's own session is in memory only and resent out of order, so the
  outbox is the only record (device/link.py).

The link (device/link.py) calls these on the thread that serves it; the methods that say so
are called with the link's lock held, which publishers hold while calling paho, so that a
PUBACK always finds its mid → seq mapping.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from touchlamp.device.outbox import Outbox, StateFileError
from touchlamp.device.state_trouble import StateFileWatch
from touchlamp.mqtt import reasons
from touchlamp.mqtt.backoff import Backoff
from touchlamp.protocol import Topics, encode

__all__ = ["HandedTouches", "TouchDelivery"]

logger = logging.getLogger(__name__)

_PUMP_BATCH = 100
_CONFIRM_KEEPALIVES = 2.0  # a dead broker is noticed within two keepalives (no PINGRESP)


@dataclass(slots=True)
class HandedTouches:
    """The touches handed to one connection's paho ``client``; replaced with the connection."""

    client: mqtt.Client
    handed: dict[int, int] = field(default_factory=dict)  # paho mid → touch seq
    handed_up_to: int = -1  # highest seq published on this connection
    # Acknowledged with "no matching subscribers", or refused for now (mqtt/reasons.py).
    unrouted: set[int] = field(default_factory=set)
    probe: int | None = None  # the one unrouted touch sent again, awaiting its PUBACK


class TouchDelivery:
    """The touches of lamp ``lamp_id`` on their way out of ``outbox``.

    ``confirm_seconds`` None: two keepalives. Touches nobody subscribed to are retried with a
    backoff between ``retry_min_seconds`` and ``retry_max_seconds`` (jittered by ``rng``).
    ``trouble`` hears whether the outbox takes writes.
    """

    def __init__(
        self,
        *,
        lamp_id: str,
        topics: Topics,
        outbox: Outbox,
        trouble: StateFileWatch,
        keepalive_seconds: int,
        confirm_seconds: float | None,
        retry_min_seconds: float,
        retry_max_seconds: float,
        rng: random.Random | None,
        outbox_max_entries: int,
    ) -> None:
        self._lamp_id = lamp_id
        self._topic = topics.touch(lamp_id)
        self._outbox = outbox
        self._trouble = trouble
        self._confirm_seconds = (
            _CONFIRM_KEEPALIVES * keepalive_seconds if confirm_seconds is None else confirm_seconds
        )
        # Retrying touches nobody subscribed to: as patient as reconnecting, jittered too.
        self._reroute_backoff = Backoff(
            minimum=retry_min_seconds,
            maximum=retry_max_seconds,
            rng=rng or random.Random(),
        )
        self._reroute_at: float | None = None
        # (when, connection generation, seq): acknowledged touches waiting to be confirmed. As
        # many as the outbox holds; one forgotten stays there, acknowledged, until pushed out.
        self._confirming: collections.deque[tuple[float, int, int]] = collections.deque(
            maxlen=outbox_max_entries
        )

    def due(self) -> list[float | None]:
        """When (monotonic) the next confirmation and the next retry are due, if they are."""
        return [self._reroute_at, self._confirming[0][0] if self._confirming else None]

    def pump(self, flight: HandedTouches) -> bool:
        """Publish every queued touch not yet published on ``flight``'s client, in seq order.

        Called with the link's lock held. False when paho reported the connection gone midway
        (the rest waits for the next connection). While a touch waits for a relay to subscribe
        (``unrouted``, ``probe``), newer ones wait behind it, so they do not arrive first.
        """
        if flight.unrouted or flight.probe is not None:
            return True
        while True:
            batch = self._outbox.pending(after_seq=flight.handed_up_to, limit=_PUMP_BATCH)
            if not batch:
                return True
            for touch in batch:
                info = flight.client.publish(self._topic, encode(touch), qos=1, retain=False)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return False
                flight.handed[info.mid] = touch.seq
                flight.handed_up_to = touch.seq
            if len(batch) < _PUMP_BATCH:
                return True  # that was all (no second look at the outbox on a touch's way)

    def acknowledged(self, flight: HandedTouches, mid: int, reason: reasons.Reason) -> int | None:
        """The touch seq the PUBACK of ``mid`` answers (None: not a touch), noted on ``flight``;
        a probe a relay took lets the rest follow, in order. Called with the link's lock held;
        ``settle`` then decides the touch's fate, without it."""
        held = reason.verdict in (reasons.Verdict.NO_SUBSCRIBERS, reasons.Verdict.RETRY)
        seq = flight.handed.pop(mid, None)
        if seq is not None and held:
            flight.unrouted.add(seq)
        if seq is not None and seq == flight.probe:
            flight.probe = None
            if not held:
                self.pump(flight)  # a relay took it: the rest follows, in order
        return seq

    def settle(self, generation: int, seq: int, reason: reasons.Reason) -> None:
        """What the PUBACK ``reason`` of touch ``seq``, sent on connection ``generation``, means
        for it: dropped (refused for good), kept to be sent again, or waiting to be confirmed."""
        if reason.verdict is reasons.Verdict.STOP:
            # Resending cannot fix a refusal (an ACL that does not allow this topic); keep
            # the outbox from filling with it, loudly.
            logger.error(
                "lamp %s: the broker refused touch seq %d (%s); dropped it: %s (%s)",
                self._lamp_id,
                seq,
                reason,
                reason.fix,
                self._topic,
            )
            self._remove(seq)
        elif reason.verdict in (reasons.Verdict.NO_SUBSCRIBERS, reasons.Verdict.RETRY):
            # NO_SUBSCRIBERS: accepted, but no relay is subscribed (not running, or the broker
            # restarted and forgot the relay's shared subscription); RETRY: refused for now.
            # Either way kept, and sent again (alone, newer ones behind it) until one is taken.
            if self._reroute_at is None:
                delay = self._reroute_backoff.next_delay()
                self._reroute_at = time.monotonic() + delay
                why = (
                    "no relay is subscribed to touches; is the relay running?"
                    if reason.verdict is reasons.Verdict.NO_SUBSCRIBERS
                    else f"refused for now ({reason})"
                )
                logger.warning(
                    "lamp %s: touch seq %d reached the broker but %s; keeping it and trying "
                    "again in %.1f s",
                    self._lamp_id,
                    seq,
                    why,
                    delay,
                )
        else:
            self._reroute_backoff.reset()
            if self._confirm_seconds <= 0:
                self._remove(seq)
            else:
                self._outbox.acknowledge(seq)
                self._confirming.append((time.monotonic() + self._confirm_seconds, generation, seq))

    def reroute_due(self, now: float) -> bool:
        """Whether it is time to send the touches nobody was subscribed to again (once)."""
        if self._reroute_at is not None and now >= self._reroute_at:
            self._reroute_at = None
            return True
        return False

    def reroute(self, flight: HandedTouches) -> None:
        """Send the oldest touch nobody was subscribed to again, alone; the rest follow once a
        relay has taken it (``acknowledged``), so none overtakes another. Called with the
        link's lock held, on a connection that is ready."""
        if not flight.unrouted:
            return
        # Those between it and the newest sent go again too: the relay drops the repeats.
        flight.handed_up_to = min(flight.unrouted) - 1
        flight.unrouted.clear()
        oldest = self._outbox.pending(after_seq=flight.handed_up_to, limit=1)
        if not oldest:
            return  # it expired meanwhile (counted); nothing waits any more
        info = flight.client.publish(self._topic, encode(oldest[0]), qos=1, retain=False)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            flight.handed[info.mid] = oldest[0].seq
            flight.handed_up_to = oldest[0].seq
            flight.probe = oldest[0].seq

    def confirm_due(self, now: float, current: int | None) -> None:
        """Remove the touches whose connection (``current``: the generation up now, if any)
        has outlived their PUBACK long enough."""
        while self._confirming and self._confirming[0][0] <= now:
            _, generation, seq = self._confirming.popleft()
            if generation == current:
                self._remove(seq)

    def expire(self) -> None:
        """Drop the touches too old to show (counted), before a connection sends the rest."""
        try:
            self._outbox.expire()
        except StateFileError as error:
            self._trouble.report("outbox", error)  # too old to show, still: sent all the same

    def connection_lost(self) -> None:
        """Acknowledged on a connection that did not last: the next one sends them again."""
        self._outbox.forget_acknowledgements()
        self._confirming.clear()
        self._reroute_at = None

    def _remove(self, seq: int) -> None:
        """The touch ``seq`` left (confirmed, or refused for good). On a disk that refuses the
        delete it stays there, and a restart sends it again: the relay drops the repeat."""
        try:
            self._outbox.remove(seq)
        except StateFileError as error:
            self._trouble.report("outbox", error)
