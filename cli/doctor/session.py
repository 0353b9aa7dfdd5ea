"""A short MQTT session of the doctor's own: log in as a lamp, a relay or the admin without
disturbing the service's session, and ask the relay one question."""

from __future__ import annotations

import contextlib
import secrets
import ssl
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from touchlamp.errors import TouchlampError

__all__ = ["DoctorSession", "NoAnswerError"]


class NoAnswerError(TouchlampError):
    pass


class DoctorSession:
    """A short MQTT 5 connection of doctor's own.

    Without ``client_id`` it is a clean, non-persistent session under a random client id, so
    nothing of the service's is touched. With ``client_id`` (a service's id, which the broker may
    bind to its user) it resumes that service's persistent session instead of replacing it —
    ``clean_start=False``, the service's own session expiry — and acknowledges nothing but its
    own answer, so the messages queued for the service stay queued for it (the broker sends
    unacknowledged messages again when the service reconnects). Use it only when the service
    is not running: a second connection with its client id would take over its session.
    """

    def __init__(self, client: mqtt.Client, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._expected: set[bytes] = set()
        self._answers: dict[bytes, bytes] = {}
        self._answered = threading.Condition()
        self._granted = False
        self.refused: str | None = None

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        context: ssl.SSLContext | None,
        timeout: float,
        client_id: str | None = None,
        session_expiry: int = 0,
    ) -> Iterator[DoctorSession]:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{username}-doctor-{secrets.token_hex(3)}",
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        session = cls(client, timeout)
        client.username_pw_set(username, password)
        if context is not None:
            client.tls_set_context(context)
        client.on_connect = session._on_connect
        client.on_subscribe = session._on_subscribe
        client.on_message = session._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if client_id is not None:
            properties.SessionExpiryInterval = session_expiry
        try:
            client.connect(
                host,
                port,
                keepalive=30,
                clean_start=client_id is None,
                properties=properties,
            )
        except (OSError, ssl.SSLError) as error:
            session.refused = f"connection failed: {error}"
            yield session
            return
        client.loop_start()
        try:
            if not session._connected.wait(timeout):
                session.refused = f"no CONNACK within {timeout:g} s"
            yield session
        finally:
            client.disconnect()
            client.loop_stop()

    def request(self, topic: str, response_topic: str, payload: bytes) -> bytes:
        """Publish a request and wait for the answer carrying its correlation data."""
        self._client.subscribe(response_topic, options=SubscribeOptions(qos=1))
        if not self._subscribed.wait(self._timeout) or not self._granted:
            raise NoAnswerError(f"the broker did not let the lamp subscribe to {response_topic}")
        correlation = secrets.token_bytes(16)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = response_topic
        properties.CorrelationData = correlation
        properties.MessageExpiryInterval = max(1, round(self._timeout))
        with self._answered:
            self._expected.add(correlation)
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise NoAnswerError(f"could not publish the request ({info.rc.name})")
        with self._answered:
            if not self._answered.wait_for(lambda: correlation in self._answers, self._timeout):
                raise NoAnswerError(
                    f"the relay did not answer a pairing request within {self._timeout:g} s"
                )
            return self._answers[correlation]

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
            self.refused = reason.getName()
        self._connected.set()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        self._granted = all(not reason.is_failure for reason in reasons)
        self._subscribed.set()

    def _on_message(
        self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._answered:
            if correlation is None or bytes(correlation) not in self._expected:
                return  # the service's message: left unacknowledged, so it comes again later
            self._answers[bytes(correlation)] = bytes(message.payload)
            self._answered.notify_all()
        client.ack(message.mid, message.qos)
