"""Home Assistant MQTT discovery for one lamp: topics and payloads, as pure functions.

Home Assistant builds entities from retained JSON configs under
``<discovery prefix>/<component>/<node id>/<object id>/config`` (its "MQTT discovery"; no custom
component). One lamp is one Home Assistant *device* with these entities:

==============  ===================  ======================================================
component       name                 what it does
==============  ===================  ======================================================
event           Touch received       fires ``touch`` or ``mutual``; attributes ``from``,
                                     ``from_lamp``, ``color``, ``shown``
button          Send a touch         touches the group as if the lamp were tapped
binary_sensor   NAME online          one per other lamp of the group (presence)
switch          Quiet                quiet now (on top of quiet hours)
sensor          Missed touches       glows not shown since the lamp was last touched
==============  ===================  ======================================================

Every entity is *available* only while the lamp's connection to the home broker holds: the
availability topic's retained ``online`` is replaced by the connection's will, ``offline``.
The lamp's own topics live under ``<topic root>/<lamp id>/`` (PROTOCOL.md, "Home Assistant");
only the two command topics are ever subscribed.

The keys are those Home Assistant documents for each MQTT platform (``event.mqtt``,
``button.mqtt``, …), written out in full rather than abbreviated, so a reader can look them up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from touchlamp.device.status import GlowNews, MemberStatus

__all__ = [
    "COMMAND_PRESS",
    "EVENT_MUTUAL",
    "EVENT_TOUCH",
    "STATE_OFF",
    "STATE_ON",
    "DiscoveryDevice",
    "HomeTopics",
    "discovery_configs",
    "event_payload",
]

AVAILABLE = "online"
NOT_AVAILABLE = "offline"
STATE_ON = "ON"
STATE_OFF = "OFF"
COMMAND_PRESS = "PRESS"
EVENT_TOUCH = "touch"
EVENT_MUTUAL = "mutual"

MANUFACTURER = "touchlamp"
MODEL = "Long-distance touch lamp"


@dataclass(frozen=True, slots=True)
class HomeTopics:
    """The lamp's topics on the home broker."""

    lamp_id: str
    topic_root: str = "touchlamp"
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.topic_root}/{self.lamp_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def touch_received(self) -> str:
        return f"{self.base}/touch_received"

    @property
    def send_touch(self) -> str:
        """The button's command topic (subscribed)."""
        return f"{self.base}/send_touch"

    @property
    def quiet(self) -> str:
        return f"{self.base}/quiet"

    @property
    def quiet_set(self) -> str:
        """The switch's command topic (subscribed)."""
        return f"{self.base}/quiet/set"

    @property
    def missed_touches(self) -> str:
        return f"{self.base}/missed_touches"

    def member_online(self, member_id: str) -> str:
        return f"{self.base}/member/{member_id}/online"

    @property
    def commands(self) -> tuple[str, ...]:
        """Every topic the lamp subscribes to on the home broker: its own commands, no more."""
        return (self.send_touch, self.quiet_set)

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/touchlamp_{self.lamp_id}/{object_id}/config"

    @property
    def fixed_configs(self) -> tuple[str, ...]:
        """The config topics that do not depend on the group (for removal without a record)."""
        return tuple(self.config(component, key) for component, key in _FIXED)


_FIXED = (
    ("event", "touch_received"),
    ("button", "send_touch"),
    ("switch", "quiet"),
    ("sensor", "missed_touches"),
)


def member_object_id(member_id: str) -> str:
    return f"member_{member_id}_online"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryDevice:
    """What Home Assistant shows on the lamp's device page."""

    lamp_id: str
    name: str
    sw_version: str
    configuration_url: str

    def as_config(self) -> dict[str, Any]:
        return {
            "identifiers": [f"touchlamp_{self.lamp_id}"],
            "name": self.name,
            "manufacturer": MANUFACTURER,
            "model": MODEL,
            "sw_version": self.sw_version,
            "configuration_url": self.configuration_url,
        }


def discovery_configs(
    device: DiscoveryDevice, topics: HomeTopics, members: Iterable[MemberStatus]
) -> dict[str, dict[str, Any]]:
    """Config topic → config, for every entity of the lamp given its group's other lamps."""

    def entity(key: str, name: str, **specific: Any) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"touchlamp_{device.lamp_id}_{key}",
            # Entity ids such as event.lamp_a_touch_received, whatever the lamp is named.
            "object_id": f"{device.lamp_id}_{key}",
            "availability_topic": topics.availability,
            "payload_available": AVAILABLE,
            "payload_not_available": NOT_AVAILABLE,
            "device": device.as_config(),
            "origin": {"name": MANUFACTURER, "sw_version": device.sw_version},
            **specific,
        }

    configs = {
        topics.config("event", "touch_received"): entity(
            "touch_received",
            "Touch received",
            state_topic=topics.touch_received,
            event_types=[EVENT_TOUCH, EVENT_MUTUAL],
            icon="mdi:lightbulb-on",
        ),
        topics.config("button", "send_touch"): entity(
            "send_touch",
            "Send a touch",
            command_topic=topics.send_touch,
            payload_press=COMMAND_PRESS,
            qos=1,
            retain=False,
            icon="mdi:gesture-tap",
        ),
        topics.config("switch", "quiet"): entity(
            "quiet",
            "Quiet",
            command_topic=topics.quiet_set,
            state_topic=topics.quiet,
            payload_on=STATE_ON,
            payload_off=STATE_OFF,
            state_on=STATE_ON,
            state_off=STATE_OFF,
            optimistic=False,
            qos=1,
            retain=False,
            icon="mdi:sleep",
        ),
        topics.config("sensor", "missed_touches"): entity(
            "missed_touches",
            "Missed touches",
            state_topic=topics.missed_touches,
            # Counts up and restarts from 0 when the lamp is touched: "total_increasing".
            state_class="total_increasing",
            icon="mdi:lightbulb-alert",
        ),
    }
    for member in members:
        key = member_object_id(member.id)
        configs[topics.config("binary_sensor", key)] = entity(
            key,
            f"{member.name} online",
            state_topic=topics.member_online(member.id),
            payload_on=STATE_ON,
            payload_off=STATE_OFF,
            device_class="connectivity",
        )
    return configs


def encode_config(config: Mapping[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def event_payload(glow: GlowNews, members: Iterable[MemberStatus]) -> bytes:
    """The event entity's message: ``event_type`` plus attributes (Home Assistant keeps the rest
    of the JSON object as the event's attributes)."""
    names = {member.id: member.name for member in members}
    return json.dumps(
        {
            "event_type": EVENT_MUTUAL if glow.mutual else EVENT_TOUCH,
            "from": names.get(glow.from_lamp, glow.from_lamp),
            "from_lamp": glow.from_lamp,
            "color": glow.color,
            "shown": glow.shown,
        },
        separators=(",", ":"),
    ).encode()


def on_off(value: bool) -> bytes:
    return (STATE_ON if value else STATE_OFF).encode()
