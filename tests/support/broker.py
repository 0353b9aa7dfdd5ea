"""The one way tests run Mosquitto: ``start_managed_broker`` (touchlamp's own rendering on a free
loopback port), the ``broker`` fixture's object, and an MQTT probe client.

``MqttProbe`` records everything paho reports (CONNACK, SUBACK, PUBACK, messages, disconnects)
under one condition variable, so a test waits for *events* with a generous timeout instead of
sleeping. It never reconnects on its own: a test sees exactly what the broker did.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.ports import free_port
from tests.support.waiting import WAIT
from touchlamp.broker.acl import INSTALLED_RELAY_CLIENT_ID
from touchlamp.broker.admin import BrokerAdmin
from touchlamp.broker.errors import BrokerStartError
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import BrokerSettings, ListenerSettings
from touchlamp.protocol.topics import Topics

__all__ = [
    "BrokerFixture",
    "BrokerLike",
    "MqttProbe",
    "Received",
    "start_managed_broker",
    "started_brokers",
]

_STARTED: list[ManagedBroker] = []
_PORT_ATTEMPTS = 5


def start_managed_broker(state_dir: Path, **settings: object) -> ManagedBroker:
    """Start a ``ManagedBroker`` on a free loopback port; the session stops it at the latest.

    Extra keyword arguments are ``BrokerSettings`` fields (e.g. ``topic_root``).
    """
    for _attempt in range(_PORT_ATTEMPTS):
        managed = ManagedBroker(
            BrokerSettings(
                state_dir=state_dir,
                listeners=[ListenerSettings(address="127.0.0.1", port=free_port())],
                **settings,  # type: ignore[arg-type]
            ),
            stop_with_parent=True,
        )
        try:
            managed.start()
        except BrokerStartError as error:
            if "cannot listen" in str(error):
                continue  # another process took the port between free_port() and start()
            raise
        _STARTED.append(managed)
        return managed
    raise BrokerStartError(f"no free loopback port found in {_PORT_ATTEMPTS} attempts")


def started_brokers() -> list[ManagedBroker]:
    """Every broker ``start_managed_broker`` started in this process (the session checks them)."""
    return list(_STARTED)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class _Record:
    connacks: list[tuple[ReasonCode, bool]] = field(default_factory=list)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    disconnects: list[ReasonCode] = field(default_factory=list)


class MqttProbe:
    """A paho MQTT 5 client for tests; see the module docstring."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str,
        clean_start: bool = True,
        session_expiry: int = 0,
        transport: str = "tcp",
        tls_ca: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            transport="websockets" if transport == "websockets" else "tcp",
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=tls_ca)
        self._record = _Record()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client = self._client
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect

    # -- actions -------------------------------------------------------------------------------

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK's reason code (a refusal is returned, not raised)."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session_expiry:
            properties.SessionExpiryInterval = self._session_expiry
        seen = len(self._record.connacks)
        self._client.connect(
            self.host, self.port, keepalive=30, clean_start=self._clean_start, properties=properties
        )
        self._ensure_loop()
        self._wait(lambda r: len(r.connacks) > seen, "CONNACK")
        return self._record.connacks[seen][0]

    @property
    def session_present(self) -> bool:
        return self._record.connacks[-1][1]

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        """Subscribe and return the SUBACK's reason code for ``topic``."""
        result, mid = self._client.subscribe(topic, qos=qos)
        assert result == MQTTErrorCode.MQTT_ERR_SUCCESS, f"subscribe({topic}) failed: {result}"
        assert mid is not None
        self._wait(lambda r: mid in r.subacks, f"SUBACK for {topic}")
        return self._record.subacks[mid][0]

    def publish(self, topic: str, payload: bytes | str) -> ReasonCode:
        """Publish with QoS 1; wait for the PUBACK and return its reason code."""
        info = self._client.publish(topic, payload, qos=1)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish({topic}) failed: {info.rc}"
        self._wait(lambda r: info.mid in r.pubacks, f"PUBACK for {topic}")
        return self._record.pubacks[info.mid]

    def messages_until(self, predicate: Callable[[Received], bool]) -> list[Received]:
        """Wait for a message matching ``predicate``; return (and consume) all up to it.

        The way to show that something did *not* arrive: send a marker after it, through the
        same broker, and check that only the marker came.
        """
        self._wait(lambda r: any(predicate(m) for m in r.messages), "the expected message")
        with self._changed:
            index = next(i for i, m in enumerate(self._record.messages) if predicate(m))
            taken = self._record.messages[: index + 1]
            del self._record.messages[: index + 1]
        return taken

    def messages(self, count: int) -> list[Received]:
        """Wait for ``count`` messages; return (and consume) them."""
        self._wait(lambda r: len(r.messages) >= count, f"{count} messages")
        with self._changed:
            taken = self._record.messages[:count]
            del self._record.messages[:count]
        return taken

    def pending(self) -> int:
        """How many received messages have not been taken yet."""
        with self._changed:
            return len(self._record.messages)

    def wait_disconnected(self) -> ReasonCode:
        """Wait until the broker closes the connection; its DISCONNECT reason code."""
        self._wait(lambda r: bool(r.disconnects), "the broker to close the connection")
        return self._record.disconnects[-1]

    def disconnect(self) -> None:
        self._client.disconnect()
        self._wait(lambda r: bool(r.disconnects), "our DISCONNECT to complete")

    def close(self) -> None:
        if self._client.is_connected():
            self._client.disconnect()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(WAIT)
            self._thread = None

    # -- plumbing ------------------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"probe-{self.client_id}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        # Our own loop instead of loop_start(): paho's would reconnect by itself.
        while not self._stop.is_set():
            if self._client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._stop.wait(0.05)

    def _wait(self, condition: Callable[[_Record], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self._record), timeout=WAIT):
                raise AssertionError(f"{self.client_id}: no {what} within {WAIT:g} s")

    def _update(self, change: Callable[[_Record], None]) -> None:
        with self._changed:
            change(self._record)
            self._changed.notify_all()

    # Paho callbacks, on the probe's loop thread: they only record.

    def _on_connect(
        self,
        _c: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: object,
    ) -> None:
        self._update(lambda r: r.connacks.append((reason, flags.session_present)))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        self._update(lambda r: r.subacks.__setitem__(mid, list(reasons)))

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object
    ) -> None:
        self._update(lambda r: r.pubacks.__setitem__(mid, reason))

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic, bytes(message.payload), message.qos, bool(message.retain)
        )
        self._update(lambda r: r.messages.append(received))

    def _on_disconnect(
        self,
        _c: mqtt.Client,
        _u: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _p: object,
    ) -> None:
        self._update(lambda r: r.disconnects.append(reason))


class BrokerLike(Protocol):
    """What a test's world uses of a broker: the ``broker`` fixture's ``BrokerFixture`` or another
    broker with touchlamp's accounts."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def relay_username(self) -> str: ...

    @property
    def relay_password(self) -> str: ...

    def relay_login(self, name: str | None = None) -> tuple[str, str]: ...

    @property
    def topics(self) -> Topics: ...

    def add_lamp(self, lamp_id: str) -> str: ...


class BrokerFixture:
    """What the ``broker`` fixture yields: a running Mosquitto and ways to be its clients."""

    def __init__(self, managed: ManagedBroker) -> None:
        self.managed = managed
        self.topics: Topics = managed.topics
        self._admin: BrokerAdmin | None = None
        self._probes: list[MqttProbe] = []
        self._relays: dict[str, str] = {}

    @property
    def host(self) -> str:
        return self.managed.host

    @property
    def port(self) -> int:
        return self.managed.port

    @property
    def relay_username(self) -> str:
        return self.managed.credentials.relay_username

    @property
    def relay_password(self) -> str:
        return self.managed.credentials.relay_password

    def relay_login(self, name: str | None = None) -> tuple[str, str]:
        """A relay login (username, password) that may use client id ``name``: the installed
        one for its client id (``INSTALLED_RELAY_CLIENT_ID``, or no name), else one made once
        with ``add_relay``, which binds it to ``name``."""
        if name is None or name == INSTALLED_RELAY_CLIENT_ID:
            return self.relay_username, self.relay_password
        if name not in self._relays:
            # A connection of its own: a test may have restarted the broker under ``admin``.
            with self.managed.admin() as admin:
                self._relays[name] = admin.add_relay(name)
        return name, self._relays[name]

    @property
    def admin(self) -> BrokerAdmin:
        """A connected admin client (reconnected after a restart)."""
        if self._admin is None:
            self._admin = self.managed.admin()
            self._admin.connect()
        return self._admin

    def probe(
        self,
        *,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
    ) -> MqttProbe:
        """An MQTT client for this broker, not yet connected; closed at teardown."""
        probe = MqttProbe(
            host=self.host,
            port=self.port,
            username=username,
            password=password,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            clean_start=clean_start,
            session_expiry=session_expiry,
        )
        self._probes.append(probe)
        return probe

    def add_lamp(self, lamp_id: str, password: str | None = None) -> str:
        """Create lamp ``lamp_id`` through the admin API; its (random unless given) password."""
        generated = self.admin.add_lamp(lamp_id)
        if password is None:
            return generated
        return self.admin.set_lamp_password(lamp_id, password)

    def connect_lamp(
        self,
        lamp_id: str,
        *,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
    ) -> MqttProbe:
        """Connect as lamp ``lamp_id`` (created first unless ``password`` is given)."""
        secret = password if password is not None else self.add_lamp(lamp_id)
        probe = self.probe(
            username=lamp_id,
            password=secret,
            client_id=lamp_id,
            clean_start=clean_start,
            session_expiry=session_expiry,
        )
        reason = probe.connect()
        assert not reason.is_failure, f"lamp {lamp_id} could not connect: {reason}"
        return probe

    def connect_relay(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str | None = None,
    ) -> MqttProbe:
        """Connect as a relay: the login ``relay_login(client_id)`` unless ``username`` is given."""
        if username is None:
            username, password = self.relay_login(client_id)
        name = username
        bound = INSTALLED_RELAY_CLIENT_ID if name == self.relay_username else name
        probe = self.probe(username=name, password=password, client_id=client_id or bound)
        reason = probe.connect()
        assert not reason.is_failure, f"relay {name} could not connect: {reason}"
        return probe

    def kill9(self) -> None:
        self._drop_admin()
        self.managed.kill9()

    def restart(self) -> None:
        self._drop_admin()
        self.managed.restart()

    def close(self) -> None:
        for probe in self._probes:
            probe.close()
        self._drop_admin()
        self.managed.stop()

    def _drop_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
