"""Publishing retained group states from the command line, after an operator's change.

``relay pair``, ``relay lamp remove`` change the store directly; the running relay does not
notice, so the command tells the lamps itself: a short MQTT 5 connection with the relay's
credentials (its own random client id and a clean session, so the relay's persistent session is
untouched) publishes each affected lamp's retained group state and waits for the broker's acks.
"""

from __future__ import annotations

import secrets

from touchlamp.config.relay import RelaySettings
from touchlamp.errors import TouchlampError
from touchlamp.mqtt.client import new_client, tls_for
from touchlamp.mqtt.session import Session
from touchlamp.protocol import GroupState, Topics, encode

__all__ = ["AnnounceError", "announce_states"]


class AnnounceError(TouchlampError, RuntimeError):
    """The broker could not be reached or refused the relay's login."""


def announce_states(
    settings: RelaySettings, states: dict[str, GroupState], *, timeout: float = 10.0
) -> None:
    """Publish ``states`` (lamp id → state) retained at QoS 1; ``AnnounceError`` on failure."""
    if not states:
        return
    mqtt_settings = settings.mqtt
    topics = Topics(mqtt_settings.topic_root)
    client = new_client(
        f"{mqtt_settings.client_id}-cli-{secrets.token_hex(4)}",
        username=mqtt_settings.username,
        password=mqtt_settings.password,
        tls=tls_for(mqtt_settings, setting="TOUCHLAMP_RELAY_MQTT__CA_FILE"),
        log_as=f"{__name__}.paho",
    )
    where = f"{mqtt_settings.host}:{mqtt_settings.effective_port}"
    with Session.open(
        client, host=mqtt_settings.host, port=mqtt_settings.effective_port, timeout=timeout
    ) as session:
        if session.unreachable is not None:
            error = session.unreachable
            raise AnnounceError(f"cannot reach the broker at {where}: {error}") from error
        if session.refused is not None:
            why = str(session.refusal) if session.refusal is not None else "no answer"
            raise AnnounceError(f"the broker at {where} did not accept the relay's login ({why})")
        published = session.publish_all(
            ((topics.group(lamp_id), encode(state)) for lamp_id, state in states.items()),
            retain=True,
        )
        if not published:
            raise AnnounceError(f"the broker at {where} did not acknowledge the group states")
