"""Who may do what on the broker: the dynamic-security roles for lamps, relays and the admin.

Measured on Debian's Mosquitto 2.0.11 (tests/broker/test_acl.py keeps these true):

- ``%u`` / ``%c`` substitution does **not** work in dynamic-security ACLs in 2.0.11: a shared
  ``lamp`` role with ``…/lamp/%u/touch`` denied the lamp's own publish and subscribe. So each lamp
  has its own role, ``lamp:<id>``, with literal topics, created and deleted with the lamp.
- A shared subscription is checked against the whole filter including ``$share/<name>/``, so the
  relay role allows both ``…/lamp/+/touch`` and ``$share/+/…/lamp/+/touch``. Delivery is then
  checked against the message's real topic (``publishClientReceive``).
- ``defaultACLAccess`` denies everything, including receiving and unsubscribing, so a role lists
  every topic it may unsubscribe from as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from touchlamp.protocol.topics import Kind, Topics, validate_lamp_id

__all__ = [
    "ADMIN_ROLE",
    "CONTROL_TOPIC",
    "DEFAULT_ACL_ACCESS",
    "INSTALLED_RELAY_CLIENT_ID",
    "LAMP_CLIENT_TEXT",
    "LAMP_ROLE_PREFIX",
    "RELAY_CLIENT_TEXT",
    "RELAY_ROLE",
    "RESPONSE_TOPIC",
    "Acl",
    "AclType",
    "Role",
    "admin_role",
    "lamp_role",
    "lamp_role_name",
    "relay_role",
]

AclType = Literal[
    "publishClientSend",
    "publishClientReceive",
    "subscribeLiteral",
    "subscribePattern",
    "unsubscribeLiteral",
    "unsubscribePattern",
]

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ADMIN_ROLE = "touchlamp-admin"
RELAY_ROLE = "touchlamp-relay"
LAMP_ROLE_PREFIX = "lamp:"
# textName of the dynsec clients we create: tells an operator's `mosquitto_ctrl` listing who is who.
LAMP_CLIENT_TEXT = "touchlamp lamp"
RELAY_CLIENT_TEXT = "touchlamp relay"
# The one client id the relay login ``touchlamp broker`` installs may use: the relay's default
# client id (RelaySettings), so an upgraded relay keeps its persistent session and the touches
# queued in it. No lamp or other relay may take this id (BrokerAdmin refuses it).
INSTALLED_RELAY_CLIENT_ID = "touchlamp-relay"

# What nobody may do unless a role allows it: nothing.
DEFAULT_ACL_ACCESS: Mapping[str, bool] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": False,
}

_LAMP_WRITES = (Kind.TOUCH, Kind.AVAILABILITY, Kind.PAIR)
_LAMP_READS = (Kind.GLOW, Kind.GROUP, Kind.PAIR_RESPONSE)


@dataclass(frozen=True, slots=True)
class Acl:
    """One allow rule of a role, in the dynamic-security JSON's vocabulary."""

    acltype: AclType
    topic: str

    def to_json(self) -> dict[str, object]:
        return {"acltype": self.acltype, "topic": self.topic, "allow": True}


@dataclass(frozen=True, slots=True)
class Role:
    """A named set of allow rules."""

    name: str
    acls: tuple[Acl, ...]

    def to_json(self) -> dict[str, object]:
        return {"rolename": self.name, "acls": [acl.to_json() for acl in self.acls]}


def lamp_role_name(lamp_id: str) -> str:
    return LAMP_ROLE_PREFIX + validate_lamp_id(lamp_id)


def lamp_role(topics: Topics, lamp_id: str) -> Role:
    """Lamp ``lamp_id`` writes its touch/availability/pair, reads its glow/group/pair response."""
    writes = [Acl("publishClientSend", topics.lamp(lamp_id, kind)) for kind in _LAMP_WRITES]
    reads = [topics.lamp(lamp_id, kind) for kind in _LAMP_READS]
    return Role(
        name=lamp_role_name(lamp_id),
        acls=(
            *writes,
            *_reading(reads, subscribe="subscribeLiteral", unsubscribe="unsubscribeLiteral"),
        ),
    )


def relay_role(topics: Topics) -> Role:
    """Relays read every lamp's touch/availability/pair (also shared) and write the replies."""
    filters = [topics.every(kind) for kind in _LAMP_WRITES]
    shared = [f"$share/+/{topic}" for topic in filters]
    acls = [
        *(Acl("subscribePattern", topic) for topic in (*filters, *shared)),
        *(Acl("unsubscribePattern", topic) for topic in (*filters, *shared)),
        *(Acl("publishClientReceive", topic) for topic in filters),
        *(Acl("publishClientSend", topics.every(kind)) for kind in _LAMP_READS),
    ]
    return Role(name=RELAY_ROLE, acls=tuple(acls))


def admin_role() -> Role:
    """Only the dynamic-security control topic: the admin manages clients, it reads no lamp."""
    return Role(
        name=ADMIN_ROLE,
        acls=(
            Acl("publishClientSend", CONTROL_TOPIC),
            *_reading(
                [RESPONSE_TOPIC], subscribe="subscribeLiteral", unsubscribe="unsubscribeLiteral"
            ),
        ),
    )


def _reading(topics: Iterable[str], *, subscribe: AclType, unsubscribe: AclType) -> list[Acl]:
    listed = list(topics)
    return [
        *(Acl(subscribe, topic) for topic in listed),
        *(Acl(unsubscribe, topic) for topic in listed),
        *(Acl("publishClientReceive", topic) for topic in listed),
    ]
