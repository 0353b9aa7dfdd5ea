"""A short synchronous MQTT 5 connection: connect, subscribe, request/response, publish, leave.

For the clients that live for one command (the doctor's probes, the relay's command line, the
Home Assistant clean-up): paho's network thread runs only while the session is open, and its
callbacks only record what arrived; the caller's thread waits for it, each wait bounded by the
session's ``timeout``. A long-lived client (the relay, a lamp) uses ``MqttDriver`` instead.

A request carries MQTT 5 correlation data and a response topic; the answer is the message on
that topic carrying the same correlation data. Other messages there are left unacknowledged
(manual acks), so the broker delivers them again to whoever they were for. A service that
answers in its payload instead (Mosquitto's dynamic-security plugin) is read with ``listen``
and ``next_message``.

Thread: one caller thread; paho's own thread runs the callbacks.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from touchlamp.errors import TouchlampError
from touchlamp.mqtt.client import connect_properties, properties
from touchlamp.mqtt.linger import lingering_close

__all__ = ["ConnectionLostError", "NoAnswerError", "Session"]


class NoAnswerError(TouchlampError, TimeoutError):
    """The broker (or the service behind it) did not answer in time, or refused a subscription."""


class ConnectionLostError(TouchlampError, ConnectionError):
    """The broker closed the session's connection; ``reason`` is its reason code."""

    def __init__(self, reason: ReasonCode) -> None:
        super().__init__(f"the broker closed the connection ({reason})")
        self.reason = reason


class Session:
    """One open connection of a short-lived client; see the module's doc.

    After ``open``: ``refused`` says why the session is not usable (``None``: connected), with
    ``unreachable`` (the connection failed) or ``refusal`` (the broker's CONNACK) behind it.
    """

    def __init__(self, client: mqtt.Client, timeout: float) -> None:
        self._client = client
        self.timeout = timeout
        self._connected = threading.Event()
        self._subscribed = threading.Condition()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._expected: set[bytes] = set()
        self._answers: dict[bytes, bytes] = {}
        self._answered = threading.Condition()
        self._listening: set[str] = set()
        self._heard: collections.deque[bytes] = collections.deque()
        self._lost: ReasonCode | None = None
        self._gone = threading.Event()
        self.refused: str | None = None
        self.unreachable: OSError | None = None
        self.refusal: ReasonCode | None = None

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        client: mqtt.Client,
        *,
        host: str,
        port: int,
        timeout: float,
        keepalive: int = 30,
        session_expiry: int | None = None,
    ) -> Iterator[Self]:
        """Connect ``client`` (from ``new_client``) and yield the session; disconnect after.

        With ``session_expiry`` the broker keeps the session (``clean_start`` off) that long;
        without, the session starts clean and ends with the connection. Never raises for the
        broker's sake: ``refused`` says what went wrong.
        """
        session = cls(client, timeout)
        client.manual_ack_set(on=True)
        client.on_connect = session._on_connect
        client.on_subscribe = session._on_subscribe
        client.on_message = session._on_message
        client.on_disconnect = session._on_disconnect
        try:
            client.connect(
                host,
                port,
                keepalive=keepalive,
                clean_start=session_expiry is None,
                properties=connect_properties(session_expiry_seconds=session_expiry),
            )
        except (OSError, ssl.SSLError) as error:
            session.unreachable = error
            session.refused = f"connection failed: {error}"
            yield session
            return
        client.loop_start()
        try:
            if not session._connected.wait(timeout):
                session.refused = f"no CONNACK within {timeout:g} s"
            yield session
        finally:
            # Lingering: what was written just before reaches the broker (mqtt/linger.py).
            with lingering_close(client, seconds=timeout):
                client.disconnect()
                # paho closes its socket when it reports the disconnect; stopping its loop
                # before that would leave the socket open.
                if session.refused is None:
                    session._gone.wait(timeout)
                client.loop_stop()

    @property
    def client(self) -> mqtt.Client:
        return self._client

    def subscribe(self, topic: str, *, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and return the broker's answer (a failure code: refused).

        Raises: ``NoAnswerError`` when the broker does not answer within ``timeout``.
        """
        with self._subscribed:
            _, mid = self._client.subscribe(topic, options=SubscribeOptions(qos=qos))
            if mid is None or not self._subscribed.wait_for(
                lambda: mid in self._subacks, self.timeout
            ):
                raise NoAnswerError(
                    f"the broker did not answer the subscription to {topic} "
                    f"within {self.timeout:g} s"
                )
            return self._subacks.pop(mid)

    def listen(self, topic: str) -> None:
        """Keep every message on ``topic`` (no wildcards) for ``next_message``."""
        self._listening.add(topic)

    def next_message(self, deadline: float) -> bytes | None:
        """The payload of the next message on a ``listen``ed topic; ``None`` once
        ``deadline`` (``time.monotonic()``) has passed.

        Raises: ``ConnectionLostError`` when the broker closed the connection meanwhile.
        """
        with self._answered:
            self._answered.wait_for(
                lambda: self._heard or self._lost is not None,
                max(0.0, deadline - time.monotonic()),
            )
            if self._heard:
                return self._heard.popleft()
            if self._lost is not None:
                raise ConnectionLostError(self._lost)
            return None

    def request(
        self, topic: str, response_topic: str, payload: bytes, *, what: str = "a request"
    ) -> bytes:
        """Publish a request and wait for the answer carrying its correlation data.

        Raises: ``NoAnswerError`` naming ``what`` when no answer comes within ``timeout``.
        """
        if any(reason.is_failure for reason in self.subscribe(response_topic)):
            raise NoAnswerError(f"the broker did not let this client subscribe to {response_topic}")
        correlation = secrets.token_bytes(16)
        request = properties(PacketTypes.PUBLISH)
        request.ResponseTopic = response_topic
        request.CorrelationData = correlation
        request.MessageExpiryInterval = max(1, round(self.timeout))
        with self._answered:
            self._expected.add(correlation)
        info = self._client.publish(topic, payload, qos=1, properties=request)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise NoAnswerError(f"could not publish the request ({info.rc.name})")
        with self._answered:
            if not self._answered.wait_for(lambda: correlation in self._answers, self.timeout):
                raise NoAnswerError(f"the relay did not answer {what} within {self.timeout:g} s")
            return self._answers[correlation]

    def publish_all(self, messages: Iterable[tuple[str, bytes]], *, retain: bool = False) -> bool:
        """Publish each (topic, payload) at QoS 1; True once the broker acknowledged them all
        within ``timeout`` (from the first publish), False otherwise."""
        deadline = time.monotonic() + self.timeout
        infos = [
            self._client.publish(topic, payload, qos=1, retain=retain)
            for topic, payload in messages
        ]
        for info in infos:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return all(info.is_published() for info in infos)

    # paho's callbacks (its network thread): they only record what arrived.

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.refusal = reason
            self.refused = reason.getName()
        self._connected.set()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        with self._subscribed:
            self._subacks[mid] = list(reasons)
            self._subscribed.notify_all()

    def _on_message(
        self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._answered:
            if message.topic in self._listening:
                self._heard.append(bytes(message.payload))
            elif correlation is None or bytes(correlation) not in self._expected:
                return  # someone else's message: left unacknowledged, so it comes again later
            else:
                self._answers[bytes(correlation)] = bytes(message.payload)
            self._answered.notify_all()
        client.ack(message.mid, message.qos)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._answered:
            self._lost = reason
            self._answered.notify_all()
        self._gone.set()
