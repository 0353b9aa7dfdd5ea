"""A stand-in lamp for the relay's integration tests: a real paho MQTT 5 client on the real broker.

It does what a lamp does on the wire — publishes touches, availability and pairing requests with
its own credentials, keeps a persistent session — and records what the relay sends it (glows,
retained group state, pairing responses), so tests can assert what a lamp owner would see.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.support.waiting import WAIT, wait_until
from touchlamp.protocol import (
    Availability,
    Glow,
    GroupState,
    PairAction,
    PairRequest,
    PairResponse,
    Topics,
    Touch,
    decode_glow,
    decode_group,
    decode_pair_response,
    encode,
    encode_availability,
)

__all__ = ["Endpoint", "TestLamp"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    root: str


def properties(packet_type: int) -> Properties:
    # paho's Properties.__init__ has no annotations; the one place the tests call it.
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class TestLamp:
    """Not a pytest class (the name says what it is). Connect with ``connect()``; every method
    waits for the broker's acknowledgement so tests need no sleeps."""

    __test__ = False

    def __init__(
        self,
        endpoint: Endpoint,
        lamp_id: str,
        password: str,
        *,
        stream: int = 3_735_928_559,
        session_expiry: int = 3600,
    ) -> None:
        self.lamp_id = lamp_id
        self.stream = stream
        self._endpoint = endpoint
        self._topics = Topics(endpoint.root)
        self._session_expiry = session_expiry
        self._lock = threading.Condition()
        self.glows: list[Glow] = []
        self.group_states: list[GroupState] = []
        self._responses: dict[bytes, PairResponse] = {}
        self._connected = False
        self._refused: ReasonCode | None = None
        self._password = password
        self._client = self._make_client(password)

    def _make_client(self, password: str) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.lamp_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(self.lamp_id, password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    # -- connection -----------------------------------------------------------------------------
    def connect(self, *, clean_start: bool = False) -> None:
        # A fresh paho client per connection: paho 2.2 leaks the socket pair of a client whose
        # loop is started a second time.
        self._client = self._make_client(self._password)
        connect = properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = self._session_expiry
        self._client.connect(
            self._endpoint.host,
            self._endpoint.port,
            clean_start=clean_start,
            properties=connect,
        )
        self._client.loop_start()
        wait_until(lambda: self._connected or self._refused, f"{self.lamp_id} to connect")
        if self._refused is not None:
            self._client.loop_stop()
            raise ConnectionRefusedError(f"{self.lamp_id}: broker refused ({self._refused})")
        topics = self._topics
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.subscribe(
            [
                (topics.glow(self.lamp_id), SubscribeOptions(qos=1)),
                (topics.group(self.lamp_id), SubscribeOptions(qos=1)),
                (topics.pair_response(self.lamp_id), SubscribeOptions(qos=1)),
            ]
        )
        assert subscribed.wait(WAIT), f"{self.lamp_id}: no SUBACK"

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._connected = False

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            if reason_code.is_failure:
                self._refused = reason_code
            else:
                self._connected = True
            self._lock.notify_all()

    def _on_disconnect(self, *_args: object) -> None:
        with self._lock:
            self._connected = False

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit(f"/lamp/{self.lamp_id}/", 1)[-1]
        payload = bytes(msg.payload)
        with self._lock:
            if kind == "glow":
                self.glows.append(decode_glow(msg.topic, payload))
            elif kind == "group":
                self.group_states.append(decode_group(msg.topic, payload))
            elif kind == "pair/response":
                correlation = getattr(msg.properties, "CorrelationData", b"")
                self._responses[bytes(correlation)] = decode_pair_response(msg.topic, payload)
            self._lock.notify_all()

    # -- sending --------------------------------------------------------------------------------
    def touch(self, seq: int, *, color: str = "#ff8800", stream: int | None = None) -> None:
        payload = encode(
            Touch(seq=seq, stream=self.stream if stream is None else stream, color=color, ts=1)
        )
        self.publish_touch_payload(payload)

    def publish_touch_payload(self, payload: bytes) -> None:
        self._client.publish(self._topics.touch(self.lamp_id), payload, qos=1).wait_for_publish(
            WAIT
        )

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT)

    def announce(self, availability: Availability) -> None:
        self.publish_raw(
            self._topics.availability(self.lamp_id),
            encode_availability(availability),
            retain=True,
        )

    def pair(
        self,
        action: PairAction,
        *,
        code: str | None = None,
        response_topic: str | None = None,
        wait: bool = True,
    ) -> PairResponse | None:
        """Send an MQTT 5 pairing request and wait for the matching response."""
        correlation = secrets.token_bytes(8)
        props = properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response_topic or self._topics.pair_response(self.lamp_id)
        props.CorrelationData = correlation
        request = PairRequest(action=action, code=code)
        self._client.publish(
            self._topics.pair(self.lamp_id),
            json.dumps(request.model_dump(mode="json", exclude_none=True)),
            qos=1,
            properties=props,
        ).wait_for_publish(WAIT)
        if not wait:
            return None
        return wait_until(
            lambda: self._responses.get(correlation), f"{self.lamp_id}'s {action.value} answer"
        )

    # -- what arrived ---------------------------------------------------------------------------
    def wait_glows(self, count: int) -> list[Glow]:
        """Wait until at least ``count`` glows arrived; return all of them."""
        with self._lock:
            ok = self._lock.wait_for(lambda: len(self.glows) >= count, timeout=WAIT)
            assert ok, f"{self.lamp_id} got {len(self.glows)} glows, expected {count}"
            return list(self.glows)

    def wait_group_state(self, check: Callable[[GroupState], bool], what: str) -> GroupState:
        with self._lock:
            ok = self._lock.wait_for(
                lambda: bool(self.group_states) and check(self.group_states[-1]), timeout=WAIT
            )
            assert ok, f"{self.lamp_id}: no group state with {what}; got {self.group_states}"
            return self.group_states[-1]

    def glow_ids(self) -> list[str]:
        with self._lock:
            return [glow.touch for glow in self.glows]

    def pair_responses(self) -> list[PairResponse]:
        """Every pairing answer that arrived on this lamp's response topic, in arrival order."""
        with self._lock:
            return list(self._responses.values())
