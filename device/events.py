"""What happens to a lamp: the events its core takes (device/core.py), from the touch sensor,
the MQTT link, the owner and the clock — one type for each thing, whoever reports it.

The link (device/link.py, device/incoming.py) emits these itself: a glow arrives as the
``GlowReceived`` the core animates, a group state as the ``GroupChanged`` it shows, a touch's
fate as a ``TouchOutcome``.
Immutable and validated where they are made (a bad colour fails here, at the edge, not
mid-animation), so they may cross threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from touchlamp.device.looks import Rgb
from touchlamp.protocol.messages import Glow, GroupState

__all__ = [
    "Connected",
    "Disconnected",
    "Event",
    "GlowReceived",
    "GroupChanged",
    "Member",
    "SetQuietNow",
    "StateTrouble",
    "Tick",
    "TouchDown",
    "TouchOutcome",
    "TouchResult",
    "TouchUp",
]


@dataclass(frozen=True, slots=True)
class TouchDown:
    """The touch sensor is touched (or the button pressed)."""


@dataclass(frozen=True, slots=True)
class TouchUp:
    """The touch sensor is let go."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GlowReceived:
    """A partner touched their lamp (the wire's ``Glow``; ``sender`` is its ``from``).

    ``touch`` is the touch id (``"lamp-a:3735928559:17"``), ``color`` is ``"#rrggbb"``, ``at``
    is the relay's clock in epoch milliseconds when it received the touch; ``waited_seconds``
    how long the broker kept it, if known (see the module docstring).
    """

    touch: str
    sender: str
    color: str
    at: int
    mutual: bool = False
    waited_seconds: float | None = None

    def __post_init__(self) -> None:
        Rgb.from_hex(self.color)  # a bad colour fails here, at the edge, not mid-animation

    @classmethod
    def from_message(cls, glow: Glow, *, waited_seconds: float | None = None) -> GlowReceived:
        return cls(
            touch=glow.touch,
            sender=glow.sender,
            color=glow.color,
            at=glow.at,
            mutual=glow.mutual,
            waited_seconds=waited_seconds,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One lamp of the group, as the relay last described it."""

    id: str
    name: str
    color: str
    online: bool

    def __post_init__(self) -> None:
        Rgb.from_hex(self.color)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChanged:
    """The group's members (this lamp may be among them); empty when the lamp is not paired."""

    members: tuple[Member, ...]

    @classmethod
    def from_message(cls, state: GroupState) -> GroupChanged:
        return cls(
            members=tuple(
                Member(id=m.id, name=m.name, color=m.color, online=m.online) for m in state.members
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    """The MQTT link is up: connected, subscribed, ``online`` published, the outbox handed to
    the broker. ``session_present``: the broker still had this lamp's session (subscriptions and
    the glows queued while the lamp was away); False after it expired or the broker lost it."""

    session_present: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """The MQTT link is down (``reason``, for the log); it retries with backoff unless
    ``auth_failed``: the broker refused the credentials and the link has stopped retrying.
    ``not_enrolled`` when there is no link at all, the lamp has no token yet
    (device/unenrolled.py)."""

    reason: str = ""
    auth_failed: bool = False
    not_enrolled: bool = False


class TouchOutcome(enum.Enum):
    """What became of a touch: the link's answer to ``send_touch`` (sent or queued) and, with
    refused, what the core shows for a tap."""

    SENT = "sent"  # handed to a live connection; leaves the outbox once confirmed (link.py)
    QUEUED = "queued"  # not connected: waits in the outbox for the next connection
    REFUSED = "refused"  # not paired: nobody to send it to


@dataclass(frozen=True, slots=True, kw_only=True)
class TouchResult:
    """What became of the most recent tap's ``SendTouch``."""

    outcome: TouchOutcome


@dataclass(frozen=True, slots=True)
class SetQuietNow:
    """The owner asks for quiet now (``on``), on top of quiet hours, or ends it."""

    on: bool


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the driver's wait for ``next_change`` ended without another event)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateTrouble:
    """The lamp's state directory refuses writes (a full disk, a read-only SD card): ``error``
    names the file and the fix — or, with ``failing`` False, it takes them again. The lamp
    carries on (touches wait in memory, glows are not remembered); ``looks.state_trouble``
    says so."""

    failing: bool
    error: str | None = None


Event = (
    TouchDown
    | TouchUp
    | GlowReceived
    | GroupChanged
    | Connected
    | Disconnected
    | TouchResult
    | SetQuietNow
    | Tick
    | StateTrouble
)
