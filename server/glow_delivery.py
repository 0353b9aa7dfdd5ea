"""Carrying out a forwarding decision (server/forwarding.py decides): a drop is counted, logged
and perhaps answered with "not paired"; a forward becomes one glow published per peer. And what
became of each glow, from its PUBACK.

**A glow nobody received is kept.** A glow's PUBACK says what became of it (mqtt/reasons.py):
"no matching subscribers" (0x10) means its lamp has no session or has not subscribed again yet
(a broker killed between saves forgets recent sessions). Such glows are kept per lamp and sent
again when the lamp says it is online (server/glows_waiting.py, RELIABILITY.md change 11); a
refused one is dropped and logged with the fix.

Worker thread only (``answered`` runs in paho's ``on_publish``, inside the worker's poll).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from touchlamp.mqtt import reasons
from touchlamp.mqtt.client import properties as _properties
from touchlamp.protocol import Topics, encode
from touchlamp.server.badmessages import BadMessages
from touchlamp.server.forwarding import Decision, Drop, DropReason, Forward
from touchlamp.server.glows_waiting import GlowsWaiting, WaitingGlow
from touchlamp.server.groupstate import NOT_PAIRED, GroupStates
from touchlamp.server.inbound import Inbound, Publish
from touchlamp.server.metrics import RelayMetrics

__all__ = ["GlowDelivery"]

_log = logging.getLogger(__name__)


class GlowDelivery:
    """``carry_out`` a decision, ``send_waiting`` the glows kept for lamps now back, and take
    each glow's PUBACK (``answered``)."""

    def __init__(
        self,
        *,
        topics: Topics,
        publish: Publish,
        waiting: GlowsWaiting,
        states: GroupStates,
        bad: BadMessages,
        metrics: RelayMetrics,
        glow_expiry_seconds: int,
        monotonic: Callable[[], float],
    ) -> None:
        self._topics = topics
        self._publish = publish
        self._waiting = waiting
        self._states = states
        self._bad = bad
        self._metrics = metrics
        self._expiry = glow_expiry_seconds
        self._monotonic = monotonic
        # Every glow handed to paho, by mid, until its PUBACK says what became of it.
        self._sent: dict[int, tuple[WaitingGlow, bool]] = {}
        # Glows are never retained and expire: a stale glow is not worth showing (PROTOCOL.md).
        self._glow_props = _PackedOnce(
            PacketTypes.PUBLISH, MessageExpiryInterval=glow_expiry_seconds
        )

    def carry_out(self, sender: str, item: Inbound, decision: Decision) -> None:
        if isinstance(decision, Drop):
            self._metrics.count_drop(decision.reason)
            if decision.reason is DropReason.BAD_PAYLOAD:
                reason = decision.error.reason if decision.error else "invalid touch"
                self._bad.log(sender, item, reason)
            if decision.notify_sender:
                self._states.publish_one(sender, NOT_PAIRED)
            return
        self._forward(decision, item)

    def _forward(self, decision: Forward, item: Inbound) -> None:
        for addressed in decision.glows:
            glow = self._waiting.new(
                addressed.to, encode(addressed.glow), expiry_seconds=self._expiry
            )
            if self._waiting.must_wait(glow):
                self._count_overflow()  # kept behind the glows its lamp has not got yet
                continue
            self._send(glow, props=self._glow_props, resent=False)
        self._metrics.forward_latency.observe(self._monotonic() - item.received)

    def _send(self, glow: WaitingGlow, *, props: Properties, resent: bool) -> None:
        mid = self._publish(self._topics.glow(glow.lamp_id), glow.payload, props=props)
        self._sent[mid] = (glow, resent)

    def send_waiting(self) -> None:
        """Glows kept for lamps that were away, when their lamp is back (or the backoff ran
        out): with what is left of their expiry, so the lamp still ages them right."""
        due = self._waiting.next_due()
        if due is None or due > self._monotonic():
            return
        taken, expired = self._waiting.take()
        if expired:
            self._metrics.glows_dropped.labels(reason="expired").inc(expired)
            _log.warning(
                "%d glow(s) kept for lamps that were away expired before they came back", expired
            )
        now = self._monotonic()
        for glow in taken:
            props = _properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, math.ceil(glow.expires_at - now))
            self._send(glow, props=props, resent=True)
        self._metrics.glows_resent.inc(len(taken))

    def answered(self, mid: int, reason_code: ReasonCode) -> None:
        """The broker's PUBACK for ``mid``: a glow answered "no subscribers" (or "retry") is
        kept for its lamp, a refused one dropped; anything else published is no glow."""
        sent = self._sent.pop(mid, None)
        if sent is None:
            # A group state (retained: "no matching subscribers" is fine, the broker keeps it)
            # or a pairing answer (the lamp that asked went away: nothing to keep it for).
            return
        glow, resent = sent
        reason = reasons.puback(reason_code.value)
        kept = reason.verdict in (reasons.Verdict.NO_SUBSCRIBERS, reasons.Verdict.RETRY)
        self._waiting.answered(glow, kept=kept, resent=resent)
        if kept:
            self._metrics.glows_kept.inc()
            _log.info(
                "a glow for %s was answered %s; kept, to send again once the lamp is back",
                glow.lamp_id,
                reason,
            )
        elif reason.verdict is reasons.Verdict.STOP:
            self._metrics.glows_dropped.labels(reason="refused").inc()
            _log.error(
                "the broker refused a glow for %s (%s); dropped it: %s (%s)",
                glow.lamp_id,
                reason,
                reason.fix,
                self._topics.glow(glow.lamp_id),
            )
        self._count_overflow()

    def _count_overflow(self) -> None:
        dropped = self._waiting.dropped()
        if dropped:
            self._metrics.glows_dropped.labels(reason="overflow").inc(dropped)
            _log.warning(
                "%d glow(s) kept for lamps that were away dropped: too many waiting (the oldest "
                "go first)",
                dropped,
            )


class _PackedOnce(Properties):
    """Properties that never change, serialised once: paho packs a message's properties on every
    publish by walking all 27 property names: some 7 % of the relay's CPU (py-spy, issue 7)."""

    def __init__(self, packet_type: int, **values: object) -> None:
        super().__init__(packet_type)  # type: ignore[no-untyped-call]
        for name, value in values.items():
            setattr(self, name, value)  # paho checks the name and the value
        object.__setattr__(self, "_packed", super().pack())  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        packed: bytes = self.__dict__["_packed"]
        return packed

    def __setattr__(self, name: str, value: object) -> None:
        if "_packed" in self.__dict__:
            raise AttributeError(f"{type(self).__name__} is packed already: cannot set {name}")
        super().__setattr__(name, value)  # type: ignore[no-untyped-call]
