"""A lamp's availability message → its presence in the store (server/presence.py), the glows
kept for it (server/glows_waiting.py) and the group states that changed.

Worker thread only.
"""

from __future__ import annotations

from touchlamp.protocol import Availability, ProtocolError, decode_availability
from touchlamp.server.badmessages import BadMessages
from touchlamp.server.glows_waiting import GlowsWaiting
from touchlamp.server.groupstate import GroupStates
from touchlamp.server.inbound import Inbound
from touchlamp.server.metrics import RelayMetrics
from touchlamp.server.presence import Presence

__all__ = ["AvailabilityUpdates"]


class AvailabilityUpdates:
    """Takes in lamps' availability (``handle``); the caller acks the message after."""

    def __init__(
        self,
        *,
        presence: Presence,
        waiting: GlowsWaiting,
        states: GroupStates,
        bad: BadMessages,
        metrics: RelayMetrics,
    ) -> None:
        self._presence = presence
        self._waiting = waiting
        self._states = states
        self._bad = bad
        self._metrics = metrics

    def handle(self, lamp_id: str, item: Inbound) -> None:
        if not item.payload:
            return  # a retained message being cleared (the lamp was removed)
        try:
            availability = decode_availability(item.topic, item.payload)
        except ProtocolError as error:
            self._bad.reject("availability", item, error.reason)
            return
        if availability is Availability.ONLINE:
            # Published right after the lamp subscribed, on the same connection: glows kept
            # for it can reach it now.
            self._waiting.online(lamp_id)
        changed = self._presence.update(lamp_id, availability)
        if changed:
            # Counted, not recounted: a recount reads every lamp, O(n²) over a start-up's
            # catch-up (10,000 lamps: ~0.1 s a lamp). Housekeeping recounts now and then.
            if availability is Availability.ONLINE:
                self._metrics.lamps_online.inc()
            else:
                self._metrics.lamps_online.dec()
            self._states.publish(list(changed))
