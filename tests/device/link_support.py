"""Helpers for the link's tests: an event recorder, a paho client playing the relay, and the
broker's throw-away TLS certificates. (The TCP "cable" a test cuts between lamp and broker is
``FaultProxy`` from tests/support/proxy.py.)"""

from __future__ import annotations

import contextlib
import queue
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.support.waiting import WAIT
from touchlamp.device.dedup import SEEN_FILE
from touchlamp.device.events import Event

__all__ = [
    "Certificates",
    "EventLog",
    "Received",
    "RelayClient",
    "ids_in_seen_file",
]

E = TypeVar("E")


class EventLog:
    """A link sink that records events and lets a test wait for one (called from any thread)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def of(self, kind: type[E]) -> list[E]:
        with self._changed:
            return [event for event in self._events if isinstance(event, kind)]

    def wait_for(
        self, kind: type[E], where: Callable[[E], bool] = lambda _: True, *, count: int = 1
    ) -> E:
        """The ``count``-th event of ``kind`` matching ``where``; fails after ``WAIT`` s."""
        with self._changed:
            found: list[E] = []

            def enough() -> bool:
                found[:] = [e for e in self._events if isinstance(e, kind) and where(e)]
                return len(found) >= count

            if not self._changed.wait_for(enough, timeout=WAIT):
                raise AssertionError(
                    f"no {count} {kind.__name__} event(s) within {WAIT} s; got {self._events}"
                )
            return found[count - 1]


def ids_in_seen_file(state_dir: Path) -> list[str]:
    """The glow ids in a lamp's seen-glows database file itself, its write-ahead log left aside
    (what a checkpoint has copied there); read from a copy, as the lamp may be writing it."""
    copy = state_dir / "seen-copy"
    copy.mkdir(exist_ok=True)
    shutil.copyfile(state_dir / SEEN_FILE, copy / SEEN_FILE)
    with contextlib.closing(sqlite3.connect(copy / SEEN_FILE)) as db:
        try:
            return [touch for (touch,) in db.execute("SELECT touch FROM seen ORDER BY n")]
        except sqlite3.OperationalError:  # no table yet: created in the log, not copied
            return []


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None
    correlation: bytes | None


class RelayClient:
    """A raw paho client with relay (or any) credentials: subscribe, collect, publish."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        persistent: bool = False,
    ) -> None:
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 2)
        self._filters: list[str] = []
        self.handler: Callable[[RelayClient, Received], None] | None = None

        def on_connect(
            client: mqtt.Client,
            _userdata: object,
            _flags: mqtt.ConnectFlags,
            reason: ReasonCode,
            _properties: Properties | None,
        ) -> None:
            if reason.is_failure:
                return
            if self._filters:
                client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters])
            self._connected.set()

        def on_subscribe(*_args: object) -> None:
            self._subscribed.set()

        def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            props = message.properties
            received = Received(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                retain=bool(message.retain),
                response_topic=getattr(props, "ResponseTopic", None),
                correlation=getattr(props, "CorrelationData", None),
            )
            if self.handler is not None:
                self.handler(self, received)
            self.messages.put(received)

        self._client.on_connect = on_connect
        self._client.on_subscribe = on_subscribe
        self._client.on_message = on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:
            properties.SessionExpiryInterval = 600
        self._client.connect(host, port, clean_start=not persistent, properties=properties)
        self._client.loop_start()
        if not self._connected.wait(WAIT):
            raise AssertionError(f"{username} could not connect to the test broker")

    def subscribe(self, *filters: str) -> None:
        self._filters.extend(filters)
        self._subscribed.clear()
        self._client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        if not self._subscribed.wait(WAIT):
            raise AssertionError(f"no SUBACK for {filters}")

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        correlation: bytes | None = None,
        wait: bool = True,
        expiry: int | None = None,
    ) -> None:
        """Publish at QoS 1; ``wait=False`` from a ``handler`` (paho's thread cannot wait);
        ``expiry``: a Message Expiry Interval in seconds, as the relay gives glows."""
        properties = None
        if correlation is not None or expiry is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if properties is not None and correlation is not None:
            properties.CorrelationData = correlation
        if properties is not None and expiry is not None:
            properties.MessageExpiryInterval = expiry
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if wait:
            info.wait_for_publish(WAIT)

    def next(self, *, topic: str | None = None) -> Received:
        """The next message (on ``topic`` if given, skipping others); fails after ``WAIT`` s."""
        while True:
            try:
                message = self.messages.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(
                    f"no message on {topic or 'any topic'} within {WAIT} s"
                ) from None
            if topic is None or message.topic == topic:
                return message

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True, slots=True)
class Certificates:
    """A throw-away CA and a server certificate it signed for ``DNS:localhost`` only."""

    ca: Path
    certificate: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        ca, ca_key = directory / "ca.pem", directory / "ca.key"
        csr, key, cert = (
            directory / "server.csr",
            directory / "server.key",
            directory / "server.pem",
        )
        extensions = directory / "server.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:localhost\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for command in (
            ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=touchlamp test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions],
        ):  # fmt: skip
            subprocess.run([str(part) for part in command], check=True, capture_output=True)
        return cls(ca=ca, certificate=cert, key=key)
