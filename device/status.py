"""What a lamp looks like from outside its agent: immutable snapshots and news, for any thread.

The agent's thread owns the ``LampCore``; everything else (the owner page's web server, the Home
Assistant bridge) sees the lamp through these frozen values:

- ``LampStatus`` — a snapshot the agent replaces after each event it handles
  (``LampAgent.status()`` returns the current one; reading it from any thread is safe because
  the agent swaps in a whole new object and never changes one);
- news for listeners (``LampAgent.add_listener``), called on the agent's thread right after the
  change: ``GlowNews`` when a glow arrived (shown or missed), ``StatusChanged`` when anything
  in the snapshot but the LED changed.

Nothing here imports the core or the agent, so both can use these types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "GlowNews",
    "LampListener",
    "LampNews",
    "LampStatus",
    "MemberStatus",
    "StatusChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class GlowNews:
    """A glow that reached this lamp.

    ``from_lamp`` is the sender's lamp id, ``color`` its ``#rrggbb``, ``mutual`` whether both
    lamps were touched together, ``shown`` whether the lamp lit up (``False``: quiet, or the
    glow arrived too old), ``at`` when the sender touched, in Unix seconds by the relay's clock
    (the lamp's own clock may be wrong; the relay's stamps every touch).
    """

    from_lamp: str
    color: str
    mutual: bool
    shown: bool
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberStatus:
    """Another lamp of the group, as the relay last described it."""

    id: str
    name: str
    color: str
    online: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LampStatus:
    """One lamp at one moment.

    ``online``: the lamp's own broker link is up. ``members``: the group's *other* lamps.
    ``quiet``: glows stay dark now (quiet hours or ``quiet_now``). ``missed_touches``: glows not
    shown since the lamp was last touched. ``led``: the current frame's output values (PWM duty,
    0..1) for red, green and blue.
    """

    lamp_id: str
    name: str
    color: str
    online: bool
    members: tuple[MemberStatus, ...]
    last_glow: GlowNews | None
    missed_touches: int
    quiet: bool
    quiet_now: bool
    led: tuple[float, float, float]

    def same_apart_from_led(self, other: LampStatus) -> bool:
        """Whether only the LED differs: what "changed" means (frames change many times a
        second; compared field by field, so an animation allocates nothing extra)."""
        return (
            self.lamp_id == other.lamp_id
            and self.name == other.name
            and self.color == other.color
            and self.online == other.online
            and self.members == other.members
            and self.last_glow == other.last_glow
            and self.missed_touches == other.missed_touches
            and self.quiet == other.quiet
            and self.quiet_now == other.quiet_now
        )


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Something in the lamp's status other than the LED changed; ``status`` is the new one."""

    status: LampStatus


LampNews = GlowNews | StatusChanged

LampListener = Callable[[LampNews], object]
"""Called on the agent's thread: must not block (hand the news to your own queue or thread)."""
