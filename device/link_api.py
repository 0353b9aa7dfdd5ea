"""What the lamp's MQTT link offers the rest of the lamp, without importing the link (or paho).

The link reports what happens as the lamp's own events (device/events.py: ``Connected``,
``Disconnected``, ``GlowReceived``, ``GroupChanged``, ``StateTrouble``), handed to a sink; it
answers ``send_touch`` with a ``TouchReceipt`` and raises ``LinkError`` when it cannot do what
was asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from touchlamp.device.events import Event, TouchOutcome
from touchlamp.errors import TouchlampError
from touchlamp.protocol.messages import Touch

__all__ = ["LinkError", "LinkSink", "LinkTimeoutError", "TouchReceipt"]


class LinkError(TouchlampError, RuntimeError):
    """The link cannot do what was asked (not connected, credentials refused, stopped)."""


class LinkTimeoutError(LinkError, TimeoutError):
    """No connection or no answer within the time allowed."""


LinkSink = Callable[[Event], None]
"""Receives every event the link reports; called from the link's thread, so it must only hand
the event on (the agent puts it on its queue)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TouchReceipt:
    """What ``send_touch`` did: the touch with its seq and stream, and whether it went out
    (``SENT``) or waits in the outbox (``QUEUED``)."""

    touch: Touch
    delivery: TouchOutcome
