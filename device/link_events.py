"""What the MQTT link reports to the lamp: small immutable events handed to a sink.

The link calls its sink from its own thread ("called from any thread" as far as the receiver is
concerned); the device agent puts each event on the lamp core's queue. The link knows topics
and payloads but not what a glow *means*, so these carry the decoded wire messages as they are.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from touchlamp.errors import TouchlampError
from touchlamp.protocol.messages import Glow, GroupState, PairResponse, Touch

__all__ = [
    "BadMessage",
    "CredentialsRejected",
    "GlowArrived",
    "GroupArrived",
    "LinkConnected",
    "LinkDisconnected",
    "LinkError",
    "LinkEvent",
    "LinkSink",
    "LinkTimeoutError",
    "PairResponseArrived",
    "StateFileTrouble",
    "TouchDelivery",
    "TouchReceipt",
]


class LinkError(TouchlampError, RuntimeError):
    """The link cannot do what was asked (not connected, credentials refused, stopped)."""


class LinkTimeoutError(LinkError, TimeoutError):
    """No connection or no answer within the time allowed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConnected:
    """Connected, subscribed, ``online`` published, the outbox handed to the broker.

    ``session_present``: the broker still had this lamp's session (subscriptions and the glows
    queued while the lamp was away); False after the session expired or the broker lost it.
    """

    session_present: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkDisconnected:
    """The connection ended; the link retries with backoff unless it is being stopped."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialsRejected:
    """The broker refused the lamp's user name or password; the link has stopped retrying."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GlowArrived:
    """A glow for this lamp, shown for the first time (redeliveries are dropped by touch id).

    ``waited_seconds``: how long the broker kept it, from its message expiry (no clock
    involved); ``None`` when it came without one.
    """

    glow: Glow
    waited_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupArrived:
    """The relay's (retained) description of this lamp's group."""

    group: GroupState


@dataclass(frozen=True, slots=True, kw_only=True)
class PairResponseArrived:
    """The pairing service answered; ``correlation`` is the request's correlation data."""

    response: PairResponse
    correlation: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BadMessage:
    """A message on one of this lamp's topics that does not follow the protocol (dropped)."""

    topic: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StateFileTrouble:
    """A file of the link in the state directory refuses writes (a full disk, a read-only SD
    card): ``error`` names it and the fix; ``None`` once every file takes writes again. The
    link carries on meanwhile (touches wait in memory, glows are not remembered)."""

    error: str | None


LinkEvent = (
    LinkConnected
    | LinkDisconnected
    | CredentialsRejected
    | GlowArrived
    | GroupArrived
    | PairResponseArrived
    | BadMessage
    | StateFileTrouble
)

LinkSink = Callable[[LinkEvent], None]
"""Receives every event; called from the link's thread, so it must only hand the event on."""


class TouchDelivery(enum.Enum):
    SENT = "sent"  # handed to a live connection; leaves the outbox once confirmed (link.py)
    QUEUED = "queued"  # not connected: waits in the outbox for the next connection


@dataclass(frozen=True, slots=True, kw_only=True)
class TouchReceipt:
    """What ``send_touch`` did: the touch with its seq and stream, and whether it went out."""

    touch: Touch
    delivery: TouchDelivery
