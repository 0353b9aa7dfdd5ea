"""How the lamp looks: ``LookSettings`` (every timing and level of its light) and ``QuietHours``.

The ``looks`` and ``quiet_hours`` groups of ``DeviceSettings`` (config/device.py), set as
``TOUCHLAMP_DEVICE_LOOKS__GLOW__LEVEL`` and ``TOUCHLAMP_DEVICE_QUIET_HOURS__START=22:00``;
``config/device.env.example`` describes every field. They are models (not settings) so the
lamp core and tests build them directly, e.g. ``LookSettings(glow=GlowLook(fade_seconds=60))``.
Every group forbids unknown fields, so a misspelt variable such as
``…_LOOKS__GLOW__FADE_SECOND`` stops start-up instead of being ignored. Groups that appear twice
with different defaults (``glow`` / ``missed``, the tap feedbacks, the status looks) are
separate subclasses: setting one field from the environment then keeps that group's own
defaults for the others (pydantic-settings replaces a default object wholesale).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from touchlamp.protocol.messages import Color

__all__ = [
    "AuthFailedLook",
    "ColorChosenLook",
    "DisconnectedLook",
    "GlowLook",
    "Level",
    "LookSettings",
    "MissedLook",
    "NoNetworkLook",
    "NotEnrolledLook",
    "PulseLook",
    "QuietHours",
    "Seconds",
    "StateTroubleLook",
    "StatusLook",
    "TapQueuedLook",
    "TapRefusedLook",
    "TapSentLook",
    "TimeZoneName",
    "TogetherLook",
]

_GROUP = ConfigDict(extra="forbid", frozen=True)

Level = Annotated[float, Field(ge=0.0, le=1.0)]
"""A perceived brightness: 0 is dark, 1 is the brightest the cap allows."""
Seconds = Annotated[float, Field(gt=0.0)]


def _check_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' "
            "(see `timedatectl list-timezones`)"
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


class PulseLook(BaseModel):
    """A short feedback: ``pulses`` soft swells to ``level`` within ``seconds``, blended over
    whatever the lamp shows. ``color`` ``None`` means the lamp's own colour."""

    model_config = _GROUP

    color: Color | None = None
    level: Level = 1.0
    pulses: int = Field(default=1, ge=1, le=10)
    seconds: Seconds = 1.2


class TapSentLook(PulseLook):
    """The touch went out: one swell in your own colour."""


class TapQueuedLook(PulseLook):
    """Offline, the touch waits in the outbox: two dimmer, slower swells in your own colour."""

    level: Level = 0.4
    pulses: int = Field(default=2, ge=1, le=10)
    seconds: Seconds = 2.4


class TapRefusedLook(PulseLook):
    """Not paired, nobody to send to: three faint warm-white swells."""

    color: Color | None = "#ffc680"
    level: Level = 0.3
    pulses: int = Field(default=3, ge=1, le=10)
    seconds: Seconds = 1.8


class ColorChosenLook(PulseLook):
    """A colour was picked by holding: two swells in the new colour."""

    pulses: int = Field(default=2, ge=1, le=10)
    seconds: Seconds = 1.6


class GlowLook(BaseModel):
    """A received touch: rise in ``attack_seconds``, breathe ``breaths`` times (each
    ``breath_seconds`` long, between ``level`` and ``level * breath_low``), then fade evenly (to
    the eye) from ``level`` to dark over ``fade_seconds``."""

    model_config = _GROUP

    level: Level = 1.0
    attack_seconds: Seconds = 0.4
    breaths: int = Field(default=6, ge=0, le=1000)
    breath_seconds: Seconds = 4.0
    breath_low: Level = 0.5
    fade_seconds: Seconds = 30 * 60.0


class MissedLook(GlowLook):
    """At the end of quiet hours, the last sender's colour: softer, slower, and longer."""

    level: Level = 0.35
    attack_seconds: Seconds = 3.0
    breaths: int = Field(default=2, ge=0, le=1000)
    breath_seconds: Seconds = 8.0
    breath_low: Level = 0.6
    fade_seconds: Seconds = 60 * 60.0


class TogetherLook(BaseModel):
    """A mutual touch (both lamps touched within the relay's window): ``turns`` times, the
    sender's colour softly gives way to yours and comes back (``turn_seconds`` each); then the
    glow fades in the sender's colour as usual."""

    model_config = _GROUP

    level: Level = 1.0
    turns: int = Field(default=4, ge=1, le=1000)
    turn_seconds: Seconds = 3.0


class StatusLook(BaseModel):
    """A slow swell repeating every ``period_seconds``; ``level`` 0 turns it off.
    ``color`` ``None`` means the lamp's own colour.

    Levels are perceived brightness and the LED gets ``level ** gamma``: the old default of
    0.06 peaked at a PWM duty of 0.002, which nobody could see (issue 13). 0.3 peaks at about
    7 %: clearly there in a lit room, still far below a glow (1.0), so it cannot be taken for
    a touch."""

    model_config = _GROUP

    color: Color | None = None
    level: Level = 0.3
    period_seconds: Seconds = 6.0


class DisconnectedLook(StatusLook):
    """Not connected for longer than ``looks.disconnected_grace_seconds``."""


class NoNetworkLook(StatusLook):
    """No network at all for longer than ``looks.disconnected_grace_seconds`` (no Wi-Fi, or the
    Wi-Fi set-up hotspot is open, DEPLOY.md "Give a lamp"): a quicker swell in cool white, not
    the lamp's colour, so "choose a Wi-Fi" is not mistaken for "the broker is away"."""

    color: Color | None = "#b4c8ff"
    period_seconds: Seconds = 3.0


class NotEnrolledLook(StatusLook):
    """No token yet (the lamp's page offers to paste one): a slow violet swell, neither the
    lamp's colour nor any trouble's, shown at once (there is no connection to wait for)."""

    color: Color | None = "#a060ff"
    period_seconds: Seconds = 4.0


class AuthFailedLook(StatusLook):
    """The broker refused the lamp's credentials: a faster, reddish swell (re-enroll the lamp),
    a little brighter than "not connected" (it needs its owner to act)."""

    color: Color | None = "#ff3000"
    level: Level = 0.4
    period_seconds: Seconds = 2.0


class StateTroubleLook(StatusLook):
    """The lamp's state directory refuses writes (a full disk, a read-only SD card): a quick
    yellow swell, as bright as a refused login's (it needs its owner too). The lamp still works;
    touches made offline are lost if it restarts, and the card may be dying: replace it
    (DEPLOY.md)."""

    color: Color | None = "#ffc000"
    level: Level = 0.4
    period_seconds: Seconds = 1.0


class LookSettings(BaseModel):
    """Every timing and level of the lamp's light. Levels are *perceived* brightness (0..1); the
    core turns them into PWM values with ``gamma`` and scales every frame by ``max_brightness``."""

    model_config = _GROUP

    gamma: float = Field(default=2.2, ge=1.0, le=4.0)
    max_brightness: Level = 1.0
    # Fast animations redraw at most this often; slow ones (a long fade) only when their
    # perceived brightness has moved by ``frame_step``, so a fading lamp sleeps between frames.
    frame_rate: float = Field(default=30.0, gt=0.0, le=200.0)
    frame_step: float = Field(default=1 / 512, gt=0.0, le=0.1)

    hold_seconds: Seconds = 1.0
    hue_cycle_seconds: Seconds = 6.0
    pick_level: Level = 1.0

    tap_sent: TapSentLook = TapSentLook()
    tap_queued: TapQueuedLook = TapQueuedLook()
    tap_refused: TapRefusedLook = TapRefusedLook()
    color_chosen: ColorChosenLook = ColorChosenLook()
    # A send result (queued / refused) arriving later than this after the tap is not shown.
    tap_result_window_seconds: Seconds = 5.0

    glow: GlowLook = GlowLook()
    together: TogetherLook = TogetherLook()
    missed: MissedLook = MissedLook()
    # Glows arriving less than this apart (a backlog delivered on reconnect) are one glow.
    coalesce_seconds: float = Field(default=2.0, ge=0.0)
    glow_max_age_seconds: Seconds = 12 * 3600.0

    disconnected_grace_seconds: float = Field(default=60.0, ge=0.0)
    disconnected: DisconnectedLook = DisconnectedLook()
    no_network: NoNetworkLook = NoNetworkLook()
    auth_failed: AuthFailedLook = AuthFailedLook()
    not_enrolled: NotEnrolledLook = NotEnrolledLook()
    state_trouble: StateTroubleLook = StateTroubleLook()
    # A faint steady light in an online partner's colour; 0 turns it off. 0.15 is a PWM duty of
    # about 1.5 %: seen in a dim room, hardly by day, and far below a glow, so "they are
    # there" never reads as "they touched" (issue 13; it was 0, off, so nobody knew it existed).
    # It stays dark in quiet hours.
    ambient_level: Level = 0.15


class QuietHours(BaseModel):
    """Local times between which incoming glows stay dark (``22:00`` to ``07:00`` crosses midnight).

    ``timezone`` is an IANA name; without it the system's local time is used, which is right
    except for scheduling across a daylight-saving change (corrected at the next wake-up).
    """

    model_config = _GROUP

    enabled: bool = False
    start: dt.time = dt.time(22, 0)
    end: dt.time = dt.time(7, 0)
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are local times: drop the offset, set timezone")
        if self.enabled and self.start == self.end:
            raise ValueError(f"start and end are both {self.start:%H:%M}: quiet hours need a span")
        return self
