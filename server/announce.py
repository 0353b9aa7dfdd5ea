"""Publishing retained group states from the command line, after an operator's change.

``relay pair``, ``relay lamp remove`` change the store directly; the running relay does not
notice, so the command tells the lamps itself: a short MQTT 5 connection publishes each affected
lamp's retained group state and waits for the broker's acks. The relay's own login is bound to
the running relay's client id (SECURITY.md), so the command makes a relay login of its own with
the admin login (``relay-cli-…``, bound to that name, a clean session) and deletes it after.

The logins are made by whoever administers the broker (``RelayLogins``: ``BrokerAdmin`` in
broker/admin.py), handed in by the command that wires both (server/cli.py): the relay's layer
does not import the broker's (ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from touchlamp.config.relay import RelaySettings
from touchlamp.errors import TouchlampError
from touchlamp.mqtt.client import new_client, tls_for
from touchlamp.mqtt.session import Session
from touchlamp.protocol import GroupState, Topics, encode

__all__ = ["AnnounceError", "RelayLogins", "announce_states"]

log = logging.getLogger(__name__)


class AnnounceError(TouchlampError, RuntimeError):
    """The broker could not be reached or refused the relay's login."""


class RelayLogins(Protocol):
    """Makes and deletes relay logins on the broker.

    Raises: a ``TouchlampError`` when the broker refuses or does not answer.
    """

    def add_relay(self, username: str) -> str:
        """Make a relay login bound to client id ``username``; its new password."""
        ...

    def remove_relay(self, username: str) -> None:
        """Delete the relay login ``username``."""
        ...


def announce_states(
    settings: RelaySettings,
    states: dict[str, GroupState],
    *,
    logins: Callable[[], RelayLogins],
    timeout: float = 10.0,
) -> None:
    """Publish ``states`` (lamp id → state) retained at QoS 1, with a relay login of its own
    made through ``logins()`` (called only when there is something to publish and an admin
    password to make it with) and deleted after.

    Raises: ``AnnounceError`` when no login could be made or the broker did not take the states.
    """
    if not states:
        return
    if settings.admin.password is None:
        raise AnnounceError(
            "no admin password to make the command's own relay login: "
            "set TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE"
        )
    admin = logins()
    username = f"relay-cli-{secrets.token_hex(4)}"
    try:
        password = admin.add_relay(username)
    except TouchlampError as error:
        raise AnnounceError(f"cannot make the command's relay login: {error}") from error
    try:
        _publish(settings, states, username, password, timeout)
    finally:
        try:
            admin.remove_relay(username)
        except TouchlampError as error:
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
    client = new_client(
        username,
        username=username,
        password=password,
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
