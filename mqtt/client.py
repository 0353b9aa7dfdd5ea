"""The one place a paho client is built: login, TLS, paho's logging, MQTT 5 and its session.

Every touchlamp process (lamp link, relay, broker admin, doctor, the relay's command line, the
Home Assistant bridge) gets its client here, as Home Assistant's ``MqttClientSetup`` and
aiomqtt's ``Client`` set paho up in one place; the callers add only their callbacks.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from touchlamp.config.mqtt import BrokerConnection
from touchlamp.mqtt.tls import CAFileError, tls_context

__all__ = ["Will", "connect_properties", "new_client", "properties", "tls_for"]


@dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for this client when it goes away without a DISCONNECT."""

    topic: str
    payload: str | bytes
    qos: int = 1
    retain: bool = True


def new_client(
    client_id: str,
    *,
    username: str | None,
    password: SecretStr | str | None = None,
    tls: ssl.SSLContext | None = None,
    log_as: str,
    mqtt5: bool = True,
    manual_ack: bool = False,
    reconnect_on_failure: bool = True,
    connect_timeout: float | None = None,
    will: Will | None = None,
    max_inflight: int | None = None,
    max_queued: int | None = None,
) -> mqtt.Client:
    """A paho client (callback API 2) logged in as ``username``, over ``tls`` when given.

    paho's own log lines go to the logger ``log_as`` (``<caller's module>.paho``), at the
    levels ``_paho_levels`` says. Nothing is connected yet: ``connect``/``connect_async`` with
    ``connect_properties`` for an MQTT 5 session, or ``MqttDriver``/``Session``.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=reconnect_on_failure,
        manual_ack=manual_ack,
    )
    paho_logger = logging.getLogger(log_as)
    paho_logger.addFilter(_paho_levels)  # once per logger: addFilter keeps one of each
    client.enable_logger(paho_logger)
    if connect_timeout is not None:
        client.connect_timeout = connect_timeout
    if username is not None:
        if isinstance(password, SecretStr):
            password = password.get_secret_value()
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    if tls is not None:
        client.tls_set_context(tls)
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    if max_queued is not None:
        client.max_queued_messages_set(max_queued)
    return client


def tls_for(
    connection: BrokerConnection,
    *,
    setting: str,
    whose: str = "the broker's",
    error: type[Exception] = CAFileError,
) -> ssl.SSLContext | None:
    """The TLS context ``connection`` asks for (``None`` with TLS off); see ``tls_context``."""
    return tls_for_file(
        connection.tls, connection.ca_file, setting=setting, whose=whose, error=error
    )


def tls_for_file(
    tls: bool,
    ca_file: Path | None,
    *,
    setting: str,
    whose: str = "the broker's",
    error: type[Exception] = CAFileError,
) -> ssl.SSLContext | None:
    """``tls_context(ca_file)`` when ``tls`` is on, else ``None``."""
    return tls_context(ca_file, setting=setting, whose=whose, error=error) if tls else None


def connect_properties(*, session_expiry_seconds: int | None) -> Properties:
    """CONNECT properties: how long the broker keeps the session (``None``: paho's default,
    the session ends with the connection)."""
    connect = properties(PacketTypes.CONNECT)
    if session_expiry_seconds is not None:
        connect.SessionExpiryInterval = session_expiry_seconds
    return connect


def properties(packet_type: int) -> Properties:
    """Empty MQTT 5 properties for ``packet_type`` (``PacketTypes.*``)."""
    # paho 2.2 leaves Properties.__init__ unannotated.
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _paho_levels(record: logging.LogRecord) -> bool:
    """paho's error lines at our level for them (a filter on each ``….paho`` logger).

    An exception raised in one of our callbacks ("Caught exception …") stays an error. paho 2.2
    logs "Client is not connected" on every loop turn while reconnecting or after a clean
    ``disconnect()``: an expected state, so DEBUG. Any other error of paho's is a dropped
    connection ("failed to receive on socket") or the like: ordinary weather for a lamp or the
    relay, which each log as a warning with what they do about it, so WARNING.
    """
    if record.levelno >= logging.ERROR:
        message = str(record.msg)
        if message.startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        elif not message.startswith("Caught exception"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        # The logger let the record through at its old level; handlers without a level of
        # their own (logging.basicConfig's) would show it at the new one regardless.
        return logging.getLogger(record.name).isEnabledFor(record.levelno)
    return True
