"""One connection's paho client for the lamp's link, and its callbacks, which only note what
arrived.

The link (device/link.py) makes a fresh client for every connection (paho's own session is in
memory only and resent out of order; the outbox is the only record). paho's callbacks run inside
``poll`` on the thread that serves the link, under paho's own locks — and the link's handlers
take the link's lock, which publishers hold while calling paho. So each callback appends a job
to ``arrived``, and the link runs the jobs right after the poll (``_handle_arrived``).

- **Subscribed on every connect**, which keeps working when the broker lost the session; the
  link reports itself connected at the SUBACK: from then on nothing sent to this lamp can miss
  it, even on a brand-new session.
- **Acknowledged once kept.** paho acknowledges a message when it reads it by default; the
  client uses ``manual_ack``: once ``message`` handled it, its acknowledgement goes to the link
  (``handled``), which sends it only when what the link handed on is kept — shown by the lamp,
  and its glow's id recorded as seen (device/incoming.py) — so a lamp killed before gets it
  again (RELIABILITY.md, changes 12 and 16). Acknowledgements keep their messages' order.
"""

from __future__ import annotations

import collections
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from touchlamp.mqtt import reasons
from touchlamp.mqtt.client import Will, new_client
from touchlamp.protocol import Availability, Topics, encode_availability

__all__ = ["Job", "LinkHandlers", "new_link_client"]

Job = Callable[[], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkHandlers:
    """What the link does with each thing a connection reports, run after the poll; each gets
    the connection's generation first, so a report from an old connection is told apart."""

    refused: Callable[[int, reasons.Reason], None]  # CONNACK refused
    connected: Callable[[int, bool, list[str]], None]  # SUBACK: session present, refusals
    disconnected: Callable[[int, str], None]  # the reason
    message: Callable[[str, bytes, bytes | None, object], None]  # topic, payload, correlation,
    # and the Message Expiry Interval left
    published: Callable[[int, int, ReasonCode], None]  # PUBACK: mid, reason
    handled: Callable[[int, Callable[[], None]], None]  # a message's acknowledgement, to be
    # sent once what it handed on is kept


def new_link_client(
    *,
    lamp_id: str,
    username: str,
    password: str,
    tls: ssl.SSLContext | None,
    connect_timeout: float,
    topics: Topics,
    log_as: str,
    generation: int,
    arrived: collections.deque[Job],
    handlers: LinkHandlers,
) -> mqtt.Client:
    """The paho client of connection ``generation`` of lamp ``lamp_id``: not yet connected,
    its will ``offline``, its callbacks appending jobs to ``arrived``."""
    client = new_client(
        lamp_id,
        username=username,
        password=password,
        tls=tls,
        log_as=log_as,
        reconnect_on_failure=False,
        manual_ack=True,  # see on_message: acknowledged once handled, not once read
        connect_timeout=connect_timeout,
        will=Will(topics.availability(lamp_id), encode_availability(Availability.OFFLINE)),
    )

    subscriptions = [
        topics.glow(lamp_id),
        topics.group(lamp_id),
        topics.pair_response(lamp_id),
    ]
    subscribing: list[int] = []  # the mid of this connection's SUBSCRIBE
    session_present: list[bool] = []

    def on_connect(
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            verdict = reasons.connack(reason.value)
            arrived.append(lambda: handlers.refused(generation, verdict))
            return
        _, mid = client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in subscriptions])
        subscribing[:] = [] if mid is None else [mid]
        client.publish(
            topics.availability(lamp_id),
            encode_availability(Availability.ONLINE),
            qos=1,
            retain=True,
        )
        session_present[:] = [flags.session_present]

    def on_subscribe(
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if mid not in subscribing:
            return
        refused = [
            f"{topic} ({reason})"
            for topic, reason in zip(subscriptions, reasons, strict=False)
            if reason.is_failure
        ]
        present = bool(session_present and session_present[0])
        arrived.append(lambda: handlers.connected(generation, present, refused))

    def on_disconnect(
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        arrived.append(lambda: handlers.disconnected(generation, str(reason)))

    def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        expiry = getattr(message.properties, "MessageExpiryInterval", None)
        topic, payload = message.topic, bytes(message.payload)
        mid, qos = message.mid, message.qos

        def handle() -> None:
            handlers.message(topic, payload, correlation, expiry)
            # Not yet: only once the glow is shown and recorded as seen. A lamp that dies
            # before gets it again from the broker; the seen ids drop a repeat after.
            if qos:
                handlers.handled(generation, lambda: _acknowledge(client, mid, qos))

        arrived.append(handle)

    def on_publish(
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        arrived.append(lambda: handlers.published(generation, mid, reason))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish
    return client


def _acknowledge(client: mqtt.Client, mid: int, qos: int) -> None:
    client.ack(mid, qos)
