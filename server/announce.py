"""Publishing retained group states from the command line, after an operator's change.

``relay pair``, ``relay lamp remove`` change the store directly; the running relay does not
notice, so the command tells the lamps itself: a short MQTT 5 connection publishes each affected
lamp's retained group state and waits for the broker's acks. The relay's own login is bound to
the running relay's client id (SECURITY.md), so the command makes a relay login of its own with
the admin login (``relay-cli-…``, bound to that name, a clean session) and deletes it after.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from touchlamp.broker.admin import BrokerAdmin
from touchlamp.broker.errors import BrokerAdminError
from touchlamp.config.relay import RelaySettings
from touchlamp.errors import TouchlampError
from touchlamp.protocol import GroupState, Topics, encode

__all__ = ["AnnounceError", "announce_states"]

log = logging.getLogger(__name__)


class AnnounceError(TouchlampError, RuntimeError):
    """The broker could not be reached or refused the relay's login."""


def announce_states(
    settings: RelaySettings, states: dict[str, GroupState], *, timeout: float = 10.0
) -> None:
    """Publish ``states`` (lamp id → state) retained at QoS 1; ``AnnounceError`` on failure."""
    if not states:
        return
    if settings.admin.password is None:
        raise AnnounceError(
            "no admin password to make the command's own relay login: "
            "set TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE"
        )
    admin = BrokerAdmin.from_relay_settings(settings, timeout=timeout)
    username = f"relay-cli-{secrets.token_hex(4)}"
    try:
        password = admin.add_relay(username)
    except BrokerAdminError as error:
        raise AnnounceError(f"cannot make the command's relay login: {error}") from error
    try:
        _publish(settings, states, username, password, timeout)
    finally:
        try:
            admin.remove_relay(username)
        except BrokerAdminError as error:
            log.warning("relay login %s left on the broker (%s): delete it", username, error)


def _publish(
    settings: RelaySettings,
    states: dict[str, GroupState],
    username: str,
    password: str,
    timeout: float,
) -> None:
    mqtt_settings = settings.mqtt
    topics = Topics(mqtt_settings.topic_root)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=username,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(username, password)
    if mqtt_settings.tls:
        client.tls_set(
            ca_certs=str(mqtt_settings.ca_file) if mqtt_settings.ca_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    where = f"{mqtt_settings.host}:{mqtt_settings.effective_port}"
    try:
        client.connect(mqtt_settings.host, mqtt_settings.effective_port, clean_start=True)
    except OSError as error:
        raise AnnounceError(f"cannot reach the broker at {where}: {error}") from error
    client.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            why = refused[0] if refused else "no answer"
            raise AnnounceError(f"the broker at {where} did not accept the relay's login ({why})")
        infos = [
            client.publish(topics.group(lamp_id), encode(state), qos=1, retain=True)
            for lamp_id, state in states.items()
        ]
        for info in infos:
            info.wait_for_publish(timeout)
        if not all(info.is_published() for info in infos):
            raise AnnounceError(f"the broker at {where} did not acknowledge the group states")
    finally:
        client.disconnect()
        client.loop_stop()
