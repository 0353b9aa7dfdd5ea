"""Topic names of wire protocol v1: the only place that spells them.

Every lamp has its own branch under the root (default ``touchlamp/v1``)::

    {root}/lamp/{id}/touch            lamp → relay    QoS 1, not retained
    {root}/lamp/{id}/glow             relay → lamp    QoS 1, not retained, message expiry
    {root}/lamp/{id}/availability     lamp (+ will)   QoS 1, retained: "online" / "offline"
    {root}/lamp/{id}/group            relay → lamp    QoS 1, retained: the group's state
    {root}/lamp/{id}/pair             lamp → relay    QoS 1, MQTT 5 request (pairing, colour)
    {root}/lamp/{id}/pair/response    relay → lamp    QoS 1, MQTT 5 response

The broker's ACL ties ``{id}`` to the MQTT username, so the topic — never the payload — names
the sender.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from touchlamp.protocol.errors import ProtocolError

__all__ = [
    "DEFAULT_ROOT",
    "LAMP_ID_PATTERN",
    "Kind",
    "TopicMatch",
    "Topics",
    "validate_lamp_id",
]

DEFAULT_ROOT = "touchlamp/v1"
LAMP_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{2,31}")
_ROOT_PATTERN = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")


class Kind(enum.Enum):
    """What a topic under a lamp carries; the value is the topic's suffix after the lamp id."""

    TOUCH = "touch"
    GLOW = "glow"
    AVAILABILITY = "availability"
    GROUP = "group"
    PAIR = "pair"
    PAIR_RESPONSE = "pair/response"


_KIND_BY_SUFFIX = {kind.value: kind for kind in Kind}


def validate_lamp_id(lamp_id: str) -> str:
    """Return ``lamp_id`` if it is a valid lamp id, else raise ``ProtocolError``."""
    if not LAMP_ID_PATTERN.fullmatch(lamp_id):
        raise ProtocolError(
            lamp_id[:64],
            "not a lamp id: use 3-32 characters from a-z, 0-9 and '-', starting with a letter "
            "or digit",
        )
    return lamp_id


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """A parsed lamp topic: whose it is and what it carries."""

    lamp_id: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and parses the topics under one root (each test may use its own root)."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not _ROOT_PATTERN.fullmatch(self.root):
            raise ProtocolError(
                self.root,
                "not a topic root: use words of A-Z, a-z, 0-9, '_' and '-' joined by '/', "
                "without wildcards or a leading/trailing '/'",
            )

    def lamp(self, lamp_id: str, kind: Kind) -> str:
        return f"{self.root}/lamp/{validate_lamp_id(lamp_id)}/{kind.value}"

    def touch(self, lamp_id: str) -> str:
        return self.lamp(lamp_id, Kind.TOUCH)

    def glow(self, lamp_id: str) -> str:
        return self.lamp(lamp_id, Kind.GLOW)

    def availability(self, lamp_id: str) -> str:
        return self.lamp(lamp_id, Kind.AVAILABILITY)

    def group(self, lamp_id: str) -> str:
        return self.lamp(lamp_id, Kind.GROUP)

    def pair(self, lamp_id: str) -> str:
        return self.lamp(lamp_id, Kind.PAIR)

    def pair_response(self, lamp_id: str) -> str:
        return self.lamp(lamp_id, Kind.PAIR_RESPONSE)

    def every(self, kind: Kind) -> str:
        """The filter matching ``kind`` for every lamp, e.g. ``touchlamp/v1/lamp/+/touch``."""
        return f"{self.root}/lamp/+/{kind.value}"

    def shared(self, share_name: str, kind: Kind) -> str:
        """A shared subscription so that several relays split the messages of ``kind``."""
        return f"$share/{share_name}/{self.every(kind)}"

    def parse(self, topic: str) -> TopicMatch:
        """Split a lamp topic into lamp id and kind; ``ProtocolError`` for anything else."""
        prefix = f"{self.root}/lamp/"
        if not topic.startswith(prefix):
            raise ProtocolError(topic[:200], f"not under {prefix}")
        lamp_id, _, suffix = topic[len(prefix) :].partition("/")
        kind = _KIND_BY_SUFFIX.get(suffix)
        if kind is None:
            raise ProtocolError(topic[:200], f"unknown lamp topic suffix {suffix[:40]!r}")
        try:
            validate_lamp_id(lamp_id)
        except ProtocolError as error:
            raise ProtocolError(topic[:200], error.reason) from None
        return TopicMatch(lamp_id=lamp_id, kind=kind)
