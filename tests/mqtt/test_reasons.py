"""One rule for the broker's reason codes (mqtt/reasons.py): the table itself, each code as
the real Mosquitto produces it, and the lamp and the relay stopping (or not) by it."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.device.link_support import EventLog
from tests.support.broker import BrokerFixture
from tests.support.proxy import Direction, FaultProxy, Packet, PacketType, remaining_length
from tests.support.waiting import WAIT
from touchlamp.config.relay import RelaySettings
from touchlamp.device.events import Disconnected
from touchlamp.device.link import LampLink
from touchlamp.mqtt import reasons
from touchlamp.mqtt.reasons import Verdict
from touchlamp.server.relay import Relay, RelayAuthError
from touchlamp.server.store import open_store

# MQTT 5 §3.2.2.2 and §3.4.2.1: every code a CONNACK and a PUBACK may carry.
_CONNACK_CODES = {0x00, *range(0x80, 0x8B), 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C}
_CONNACK_CODES |= {0x9D, 0x9F}
_PUBACK_CODES = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}


def test_the_table_has_every_code_of_the_standard_each_with_why_and_a_fix_to_stop() -> None:
    assert set(reasons.CONNACK) == _CONNACK_CODES
    assert set(reasons.PUBACK) == _PUBACK_CODES
    for reason in (*reasons.CONNACK.values(), *reasons.PUBACK.values()):
        assert reason.why, reason
        assert bool(reason.fix) == (reason.verdict is Verdict.STOP), reason
        assert (reason.verdict is Verdict.DONE) == (reason.code < 0x80 and reason.code != 0x10)
    # The codes lamp and relay disagreed on (issue 18): all stop both now.
    for code in (0x86, 0x87, 0x8A, 0x8C):
        assert reasons.connack(code).verdict is Verdict.STOP
    assert reasons.puback(0x10).verdict is Verdict.NO_SUBSCRIBERS
    # A code the table does not know is judged by its class, never "stop for good".
    assert reasons.connack(0xA5).verdict is Verdict.RETRY
    assert reasons.puback(0x11).verdict is Verdict.DONE
    assert str(reasons.connack(0x8C)) == "Bad authentication method (0x8C)"


# ---- against the real Mosquitto -----------------------------------------------------------------


class Probe:
    """A plain paho client: what the broker answers to its CONNECT and its PUBLISH."""

    def __init__(
        self, broker: BrokerFixture, *, client_id: str, username: str, password: str
    ) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self._client.username_pw_set(username, password)
        self._broker = broker
        self._answers: dict[str, int] = {}
        self._changed = threading.Condition()

        def on_connect(*args: object) -> None:
            self._answer("connack", args[3])

        def on_publish(*args: object) -> None:
            self._answer("puback", args[3])

        self._client.on_connect = on_connect
        self._client.on_publish = on_publish

    def _answer(self, what: str, reason: object) -> None:
        assert isinstance(reason, ReasonCode)
        with self._changed:
            self._answers[what] = reason.value
            self._changed.notify_all()

    def _wait(self, what: str) -> int:
        with self._changed:
            assert self._changed.wait_for(lambda: what in self._answers, WAIT), f"no {what}"
            return self._answers.pop(what)

    def connack(self, *, clean_start: bool = True, auth_method: str | None = None) -> int:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if clean_start else 60
        if auth_method is not None:
            properties.AuthenticationMethod = auth_method
        self._client.connect(
            self._broker.host, self._broker.port, clean_start=clean_start, properties=properties
        )
        self._client.loop_start()
        return self._wait("connack")

    def puback(self, topic: str) -> int:
        self._client.publish(topic, b"{}", qos=1)
        return self._wait("puback")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    made: list[Probe] = []
    yield made
    for probe in made:
        probe.close()


def _probe(broker: BrokerFixture, probes: list[Probe], **login: str) -> Probe:
    probes.append(Probe(broker, **login))
    return probes[-1]


def test_mosquitto_refuses_a_wrong_password_and_both_stop(
    broker: BrokerFixture, probes: list[Probe]
) -> None:
    broker.add_lamp("lamp-a")
    probe = _probe(broker, probes, client_id="lamp-a", username="lamp-a", password="wrong")
    code = probe.connack()
    assert code in (0x86, 0x87)
    assert reasons.connack(code).verdict is Verdict.STOP


def test_mosquitto_refuses_an_authentication_method_it_does_not_know(
    broker: BrokerFixture, probes: list[Probe]
) -> None:
    password = broker.add_lamp("lamp-a")
    probe = _probe(broker, probes, client_id="lamp-a", username="lamp-a", password=password)
    assert probe.connack(auth_method="SCRAM-SHA-1") == 0x8C
    assert reasons.connack(0x8C).verdict is Verdict.STOP


def test_mosquitto_answers_publishes_with_success_no_subscribers_and_not_authorized(
    broker: BrokerFixture, probes: list[Probe]
) -> None:
    password = broker.add_lamp("lamp-a")
    broker.add_lamp("lamp-b")
    topics = broker.topics
    lamp = _probe(broker, probes, client_id="lamp-a", username="lamp-a", password=password)
    assert lamp.connack() == 0x00
    relay_username, relay_password = broker.relay_login("relay-probe")
    relay = _probe(
        broker,
        probes,
        client_id="relay-probe",
        username=relay_username,
        password=relay_password,
    )
    assert relay.connack() == 0x00

    assert lamp.puback(topics.touch("lamp-a")) == 0x10  # no relay subscribed
    assert relay.puback(topics.glow("lamp-b")) == 0x10  # lamp B has no session
    assert lamp.puback(topics.touch("lamp-b")) == 0x87  # not its own topic
    assert reasons.puback(0x10).verdict is Verdict.NO_SUBSCRIBERS
    assert reasons.puback(0x87).verdict is Verdict.STOP
    assert reasons.puback(0x00).verdict is Verdict.DONE


# ---- the lamp and the relay use it --------------------------------------------------------------


def _read_varint(data: bytes, at: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    while at < len(data):
        byte = data[at]
        value += (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7
    return None


def _with_auth_method(connect: Packet, method: bytes) -> bytes:
    """An MQTT 5 CONNECT with property 0x15 (Authentication Method) added."""
    assert connect.kind == PacketType.CONNECT, "not a CONNECT"
    body = connect.body
    (name_length,) = struct.unpack_from("!H", body)
    header_end = 2 + name_length + 1 + 1 + 2  # protocol name, level, flags, keepalive
    assert body[2 + name_length] == 5, "not MQTT 5"
    properties_length, properties_at = _read_varint(body, header_end) or (0, 0)
    properties = body[properties_at : properties_at + properties_length]
    properties += b"\x15" + struct.pack("!H", len(method)) + method
    new_body = (
        body[:header_end]
        + remaining_length(len(properties))
        + properties
        + body[properties_at + properties_length :]
    )
    return Packet(kind=connect.kind, flags=connect.flags, body=new_body).wire


@pytest.fixture
def adding_auth_method(broker: BrokerFixture) -> Iterator[FaultProxy]:
    """A proxy to the broker that adds an Authentication Method property to each client's
    CONNECT, as a client configured for SCRAM would: the real broker then answers 0x8C, "Bad
    authentication method"."""
    proxy = FaultProxy(target_port=broker.port)
    proxy.rewrite(
        lambda direction, packet: (
            _with_auth_method(packet, b"SCRAM-SHA-1")
            if direction is Direction.UP and packet.kind == PacketType.CONNECT
            else None
        )
    )
    yield proxy
    proxy.close()


@pytest.mark.allow_error_logs
def test_a_lamp_refused_for_its_authentication_method_stops_retrying(
    broker: BrokerFixture, adding_auth_method: FaultProxy, tmp_path: Path
) -> None:
    """Before the table, the lamp matched three refusal *names* and retried 0x8C for ever."""
    events = EventLog()
    link = LampLink(
        lamp_id="lamp-a",
        password=broker.add_lamp("lamp-a"),
        sink=events,
        state_dir=tmp_path / "lamp-a",
        host=broker.host,
        port=adding_auth_method.port,
        topic_root=broker.topics.root,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.2,
    )
    link.start()
    try:
        rejected = events.wait_for(Disconnected, lambda event: event.auth_failed)
        assert rejected.reason == "Bad authentication method (0x8C)"
        # Retrying every 0.05-0.2 s, it would have knocked again many times by now.
        threading.Event().wait(1.5)
        assert adding_auth_method.accepted == 1
    finally:
        link.stop()


@pytest.mark.allow_error_logs
def test_a_relay_refused_for_its_authentication_method_stops_too(
    broker: BrokerFixture, adding_auth_method: FaultProxy, tmp_path: Path
) -> None:
    settings = RelaySettings(
        store_url=str(tmp_path / "relay.sqlite3"),
        mqtt={
            "host": broker.host,
            "port": adding_auth_method.port,
            "username": broker.relay_username,
            "password": broker.relay_password,
            "topic_root": broker.topics.root,
            "reconnect_min_seconds": 0.05,
            "reconnect_max_seconds": 0.2,
        },
    )
    store = open_store(tmp_path / "relay.sqlite3")
    relay = Relay(settings=settings, store=store)
    relay.start()
    try:
        with pytest.raises(RelayAuthError, match=r"Bad authentication method \(0x8C\)"):
            relay.wait_connected(3.0)
        assert adding_auth_method.accepted == 1
    finally:
        relay.stop()
        store.close()
