"""The world every security test attacks: a real Mosquitto (plain MQTT on loopback, TLS with a
private CA from ``touchlamp broker certs``), a real relay on a real SQLite store, and a legitimate
pair of lamps whose touches must keep flowing through every attack.

``SecureWorld.exchange()`` makes lamp-a and lamp-b touch each other once and waits for both
glows; tests call it before, during and after an attack, so "the legitimate lamps' traffic is
unaffected" is asserted, not assumed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from tests.relay.lamps import TestLamp, properties
from tests.relay.live import Site
from tests.support.broker import BrokerFixture, start_managed_broker
from tests.support.clock import FakeClock
from tests.support.ports import free_port
from tests.support.relay import running_relay
from tests.support.waiting import WAIT, wait_until
from touchlamp.broker.certs import Certificates, make_certificates
from touchlamp.config.broker import TlsSettings
from touchlamp.protocol import Availability, PairResponse, Topics, decode_pair_response
from touchlamp.server.store import Store, open_store

__all__ = ["LEGIT", "Mischief", "SecureWorld"]

LEGIT = ("lamp-a", "lamp-b")


class SecureWorld:
    """Broker with TLS, relay, store and the legitimate pair; ``close()`` stops everything."""

    def __init__(self, directory: Path, **relay_overrides: Any) -> None:
        self.directory = directory
        # The broker's certificate names only "localhost": dialing 127.0.0.1 is a wrong name.
        self.certificates: Certificates = make_certificates(
            directory / "certs", hosts=["localhost"]
        )
        self.tls_port = free_port()
        managed = start_managed_broker(
            directory / "broker",
            tls=TlsSettings(
                enabled=True,
                address="127.0.0.1",
                port=self.tls_port,
                certfile=self.certificates.certificate,
                keyfile=self.certificates.key,
            ),
        )
        self.broker = BrokerFixture(managed)
        self.relay_state = directory / "relay-state"
        self.relay_state.mkdir()
        # The file `touchlamp relay …` opens for this state dir, so CLI and relay share it. The
        # relay's worker has a connection of its own: a SQLite store is for one thread at a time.
        store_file = self.relay_state / "relay.sqlite3"
        self.store: Store = open_store(store_file)
        self._relay_store = open_store(store_file)
        self.site = Site(self.broker, self.store)
        self.topics = self.broker.topics
        self.clock = FakeClock.shifted()
        self.a = self.site.lamp(LEGIT[0])
        self.b = self.site.lamp(LEGIT[1])
        self.site.pair(self.a, self.b)
        for lamp in (self.a, self.b):
            lamp.announce(Availability.ONLINE)
        # No mutual touches: each touch then makes exactly one glow, which exchange() counts.
        relay_overrides.setdefault("forwarding", {"mutual_window_seconds": 0})
        self._running = ExitStack()
        self.relay = self._running.enter_context(
            running_relay(
                self.site.settings(**relay_overrides), self._relay_store, clock=self.clock
            )
        )
        wait_until(self.legit_online, "the legitimate lamps shown online")
        self._seq = 0
        self.exchanges = 0
        self._clients: list[Mischief] = []

    def legit_online(self) -> bool:
        """Whether the relay records both legitimate lamps as online (their retained state)."""
        lamps = [self.store.get_lamp(lamp_id) for lamp_id in LEGIT]
        return all(lamp is not None and lamp.online for lamp in lamps)

    def assert_only_legit_glows(self) -> None:
        """Every glow lamp-a and lamp-b ever got is a real touch of the other one."""
        for lamp, partner in ((self.a, self.b), (self.b, self.a)):
            forged = [
                glow
                for glow in lamp.glows
                if glow.sender != partner.lamp_id
                or not glow.touch.startswith(f"{partner.lamp_id}:{partner.stream}:")
            ]
            assert not forged, f"{lamp.lamp_id} got glows that are no touch of its partner"

    def exchange(self) -> None:
        """lamp-a and lamp-b touch each other once; both glows arrive (else the test fails)."""
        self._seq += 1
        before_a, before_b = len(self.a.glows), len(self.b.glows)
        self.a.touch(self._seq)
        glow = self.b.wait_glows(before_b + 1)[-1]
        assert glow.touch == f"lamp-a:{self.a.stream}:{self._seq}", glow
        self.b.touch(self._seq)
        glow = self.a.wait_glows(before_a + 1)[-1]
        assert glow.touch == f"lamp-b:{self.b.stream}:{self._seq}", glow
        self.exchanges += 1

    def lamp(self, lamp_id: str, **kwargs: Any) -> TestLamp:
        """Another enrolled lamp (broker login and relay record), connected."""
        return self.site.lamp(lamp_id, **kwargs)

    def enroll(self, lamp_id: str, *, in_legit_group: bool = False) -> str:
        """A broker login and relay record for ``lamp_id`` (not connected); its password.

        ``in_legit_group`` makes it a member of lamp-a's group: the lamp owner next door.
        """
        password = self.broker.add_lamp(lamp_id)
        self.store.add_lamp(lamp_id, name=lamp_id, color="#996633", now_ms=0)
        if in_legit_group:
            group = self.store.group_of(LEGIT[0])
            assert group is not None
            self.store.join_group(lamp_id, group.id, max_size=8)
        return password

    def relay_env_file(self) -> Path:
        """The relay's settings as an operator writes them, for `touchlamp relay …` commands."""
        layout = self.broker.managed.layout
        path = self.directory / "relay.env"
        path.write_text(
            f"TOUCHLAMP_RELAY_STATE_DIR={self.relay_state}\n"
            f"TOUCHLAMP_RELAY_MQTT__HOST={self.broker.host}\n"
            f"TOUCHLAMP_RELAY_MQTT__PORT={self.broker.port}\n"
            f"TOUCHLAMP_RELAY_MQTT__TOPIC_ROOT={self.topics.root}\n"
            f"TOUCHLAMP_RELAY_MQTT__PASSWORD_FILE={layout.relay_password_file}\n"
            f"TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE={layout.admin_password_file}\n"
            # What lamps dial: TLS with the private CA, which tokens then carry.
            "TOUCHLAMP_RELAY_PUBLIC__HOST=localhost\n"
            f"TOUCHLAMP_RELAY_PUBLIC__PORT={self.tls_port}\n"
            "TOUCHLAMP_RELAY_PUBLIC__TLS=true\n"
            f"TOUCHLAMP_RELAY_PUBLIC__CA_FILE={self.certificates.ca_certificate}\n",
            encoding="utf-8",
        )
        return path

    def mischief(self, lamp_id: str, password: str) -> Mischief:
        """A raw MQTT 5 client logged in as ``lamp_id`` (client id = lamp id), connected."""
        client = Mischief(self.broker.host, self.broker.port, lamp_id, password)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._running.close()  # stops the relay
        self.site.close()
        self._relay_store.close()
        self.store.close()
        self.broker.close()


class Mischief:
    """What a lamp's credentials in the wrong hands can send: any payload on any topic, with any
    MQTT 5 response topic and correlation data. ``publish`` returns the broker's PUBACK reason,
    or ``None`` when the broker closed the connection instead (it reconnects for the next one).
    """

    def __init__(self, host: str, port: int, lamp_id: str, password: str) -> None:
        self._where = (host, port)
        self._lamp_id = lamp_id
        self._password = password
        self._acks: dict[int, ReasonCode] = {}
        self._answers: dict[int, PairResponse] = {}
        self._changed = threading.Condition()
        self._connected = False
        self._client = self._connect()

    def _connect(self) -> mqtt.Client:
        # A fresh paho client per connection (paho leaks a socket pair when one is reused).
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._lamp_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(self._lamp_id, self._password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect(*self._where)
        client.loop_start()
        with self._changed:
            assert self._changed.wait_for(lambda: self._connected, timeout=WAIT), (
                f"{self._lamp_id} could not connect"
            )
        return client

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> ReasonCode | None:
        with self._changed:
            connected = self._connected
        if not connected:
            self._client.loop_stop()
            self._client = self._connect()
        props = properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=props)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return None
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        with self._changed:
            answered = self._changed.wait_for(
                lambda: info.mid in self._acks or not self._connected, timeout=WAIT
            )
            assert answered, f"no PUBACK for {topic}"
            return self._acks.pop(info.mid, None)

    def ask(self, topics: Topics, requests: Sequence[bytes]) -> list[PairResponse]:
        """Send every pairing request at once, as fast as the broker takes them; the answers,
        in the order of the requests (a flood, not a polite client waiting for each answer)."""
        self._client.subscribe(topics.pair_response(self._lamp_id), qos=1)
        with self._changed:
            self._answers.clear()
        for number, payload in enumerate(requests):
            props = properties(PacketTypes.PUBLISH)
            props.ResponseTopic = topics.pair_response(self._lamp_id)
            props.CorrelationData = number.to_bytes(4, "big")
            info = self._client.publish(
                topics.pair(self._lamp_id), payload, qos=1, properties=props
            )
            assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        with self._changed:
            done = self._changed.wait_for(lambda: len(self._answers) >= len(requests), timeout=WAIT)
            assert done, f"{len(self._answers)} of {len(requests)} pairing answers came"
            return [self._answers[number] for number in range(len(requests))]

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        correlation = getattr(message.properties, "CorrelationData", b"")
        answer = decode_pair_response(message.topic, bytes(message.payload))
        with self._changed:
            self._answers[int.from_bytes(correlation, "big")] = answer
            self._changed.notify_all()

    def _on_connect(self, *_args: object) -> None:
        with self._changed:
            self._connected = True
            self._changed.notify_all()

    def _on_disconnect(self, *_args: object) -> None:
        with self._changed:
            self._connected = False
            self._changed.notify_all()

    def _on_publish(
        self, _client: mqtt.Client, _userdata: object, mid: int, reason: ReasonCode, _p: object
    ) -> None:
        with self._changed:
            self._acks[mid] = reason
            self._changed.notify_all()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
