"""A lamp's pairing request on the wire → ``Pairing`` (server/pairing.py) → the answer on the
lamp's response topic, and the group states that changed.

The answer goes only to ``…/lamp/<id>/pair/response`` of the lamp that asked: answering on any
other topic would let one lamp make the relay write elsewhere. Worker thread only.
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes

from touchlamp.mqtt.client import properties as _properties
from touchlamp.protocol import ProtocolError, Topics, decode_pair_request, encode
from touchlamp.server.badmessages import BadMessages
from touchlamp.server.groupstate import GroupStates
from touchlamp.server.inbound import Inbound, Publish
from touchlamp.server.membership import MembershipCache
from touchlamp.server.metrics import RelayMetrics
from touchlamp.server.pairing import Pairing, bad_request

__all__ = ["PairRequests"]


class PairRequests:
    """Answers pairing requests (``handle``); the caller acks the request after."""

    def __init__(
        self,
        *,
        pairing: Pairing,
        memberships: MembershipCache,
        topics: Topics,
        publish: Publish,
        states: GroupStates,
        bad: BadMessages,
        metrics: RelayMetrics,
    ) -> None:
        self._pairing = pairing
        self._memberships = memberships
        self._topics = topics
        self._publish = publish
        self._states = states
        self._bad = bad
        self._metrics = metrics

    def handle(self, lamp_id: str, item: Inbound) -> None:
        expected = self._topics.pair_response(lamp_id)
        if item.response_topic != expected:
            self._bad.reject("pair", item, f"ignored: the response topic must be {expected}")
            return
        changed: tuple[str, ...] = ()
        try:
            request = decode_pair_request(item.topic, item.payload)
        except ProtocolError as error:
            self._bad.reject("pair", item, error.reason)
            response = bad_request(item.payload, error.reason)
        else:
            outcome = self._pairing.handle(lamp_id, request)
            response, changed = outcome.response, outcome.changed
        props = _properties(PacketTypes.PUBLISH)
        if item.correlation is not None:
            props.CorrelationData = item.correlation
        self._publish(expected, encode(response), props=props)
        # Seen by the next touches at once (the store's revision would tell them too, one
        # refused transaction later).
        self._memberships.refresh()
        self._states.publish(list(changed))
        outcome_label = "ok" if response.ok else (response.error or "refused")
        self._metrics.pair_requests.labels(
            action=response.action.value, outcome=outcome_label
        ).inc()
