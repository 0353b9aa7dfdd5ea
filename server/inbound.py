"""One message from the broker as the relay's handlers see it (``Inbound``), and the one way they
publish (``Publish``, the edge's: it counts what awaits a PUBACK and waits while paho's
outgoing queue is full, server/relay.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

__all__ = ["Inbound", "Publish"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from the broker, as the worker needs it (paho's object stays in paho)."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int  # which connection it came on (acks are only valid on that one)
    redelivered: bool  # the broker's DUP flag: a relay took it before and did not ack it
    retained: bool  # the retain flag as published (retain-as-published subscriptions)
    received: float  # monotonic, for the latency histogram
    response_topic: str | None
    correlation: bytes | None

    @classmethod
    def from_paho(cls, msg: mqtt.MQTTMessage, *, generation: int, received: float) -> Inbound:
        """Copy what the relay uses out of paho's message (called in paho's ``on_message``)."""
        properties = msg.properties
        response_topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = ""  # the worker counts and acks it like any unroutable message
        return cls(
            topic=topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            mid=msg.mid,
            generation=generation,
            redelivered=bool(msg.dup),
            retained=bool(msg.retain),
            received=received,
            response_topic=response_topic if isinstance(response_topic, str) else None,
            correlation=bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
        )


class Publish(Protocol):
    """Hand a QoS 1 message to paho; its mid (for the PUBACK). Worker thread only."""

    def __call__(
        self, topic: str, payload: bytes, *, retain: bool = False, props: Properties | None = None
    ) -> int: ...
