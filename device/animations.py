"""The lamp's animations, in perceived values (0..1 before the gamma curve, device/looks.py):
the received glow (rise, breaths or the mutual turns, the long fade), the short swells that
answer a tap, and the status patterns. Pure: each is a frozen value sampled at a time ``now``;
the core (device/core.py) decides which run and blends them.

Each also says when it next changes by a visible step (``next_change``), so the lamp draws a
frame only when it is worth drawing and an idle lamp sleeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from touchlamp.config.looks import GlowLook, LookSettings, PulseLook, StatusLook
from touchlamp.device.looks import Rgb, mix, smoothstep, swell

__all__ = ["GlowAnimation", "Pulse", "frame_interval", "status_sample"]


def frame_interval(*, frame_rate: float, step: float, slope: float) -> float:
    """How long until a frame is worth drawing: ``step`` of perceived change, at most frame_rate."""
    fastest = 1.0 / frame_rate
    if slope <= 0.0:
        return math.inf
    return max(fastest, step / slope)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pulse:
    """``pulses`` swells of ``color`` blended over what is under it, from ``start`` to ``end``."""

    color: Rgb
    pulses: int
    start: float
    end: float

    @classmethod
    def of(cls, look: PulseLook, *, own: Rgb, start: float) -> Pulse:
        color = Rgb.from_hex(look.color) if look.color else own
        return cls(
            color=color.scaled(look.level),
            pulses=look.pulses,
            start=start,
            end=start + look.seconds,
        )

    def weight(self, now: float) -> float:
        if now >= self.end:
            return 0.0
        progress = (now - self.start) / (self.end - self.start) * self.pulses
        return swell(progress % 1.0)

    def next_change(self, now: float, frame_rate: float) -> float | None:
        if now >= self.end:
            return None
        return min(now + 1.0 / frame_rate, self.end)


@dataclass(frozen=True, slots=True, kw_only=True)
class GlowAnimation:
    """A received touch: attack, then breaths (or the mutual turns), then the fade."""

    touch: str
    sender: str
    color: Rgb
    at: int
    mutual: bool
    start: float
    look: GlowLook
    looks: LookSettings
    # Whether the lamp was driven at or after the end of the rise (so a frame showed the glow).
    peak_shown: bool = False

    def as_driven_at(self, now: float) -> GlowAnimation:
        """This glow once the driver draws a frame at ``now``.

        A glow that ended before any frame at or after its peak was drawn (the driver's thread
        paused longer than the whole look) restarts with its peak at ``now``, then breathes and
        fades as usual: a touch never passes unseen because a frame came late. A glow caught
        mid-way keeps its timeline; it was seen, if late.
        """
        if self.peak_shown:
            return self
        attack_end, _, fade_end, _ = self._phases()
        if now < attack_end:
            return self
        if now < fade_end:
            return replace(self, peak_shown=True)
        return replace(self, start=now - self.look.attack_seconds, peak_shown=True)

    def _phases(self) -> tuple[float, float, float, float]:
        """(end of attack, end of middle, end of fade, level the middle ends at)."""
        attack = self.start + self.look.attack_seconds
        if self.mutual:
            middle = self.looks.together.turns * self.looks.together.turn_seconds
            level = self.looks.together.level
        else:
            middle = self.look.breaths * self.look.breath_seconds
            level = self.look.level
        return attack, attack + middle, attack + middle + self.look.fade_seconds, level

    def sample(self, now: float, own: Rgb) -> Rgb | None:
        attack_end, middle_end, fade_end, level = self._phases()
        if now >= fade_end:
            return None
        if now < attack_end:
            rise = smoothstep((now - self.start) / self.look.attack_seconds)
            return self.color.scaled(level * rise)
        if now < middle_end:
            elapsed = now - attack_end
            if self.mutual:
                turn = (elapsed / self.looks.together.turn_seconds) % 1.0
                return mix(self.color, own, swell(turn)).scaled(level)
            breath = (elapsed / self.look.breath_seconds) % 1.0
            return self.color.scaled(level * (1.0 - (1.0 - self.look.breath_low) * swell(breath)))
        # Linear in perceived brightness: to_output turns it into the gamma-shaped PWM fall.
        remaining = (fade_end - now) / self.look.fade_seconds
        return self.color.scaled(level * remaining)

    def next_change(self, now: float) -> float | None:
        attack_end, middle_end, fade_end, level = self._phases()
        if now >= fade_end:
            return None
        rate, step = self.looks.frame_rate, self.looks.frame_step
        if now < attack_end:
            # smoothstep's steepest slope is 1.5 per unit of progress.
            slope, phase_end = 1.5 * level / self.look.attack_seconds, attack_end
        elif now < middle_end:
            if self.mutual:
                slope = math.pi * level / self.looks.together.turn_seconds
            else:
                depth = level * (1.0 - self.look.breath_low)
                slope = math.pi * depth / self.look.breath_seconds
            phase_end = middle_end
        else:
            slope, phase_end = level / self.look.fade_seconds, fade_end
        return min(now + frame_interval(frame_rate=rate, step=step, slope=slope), phase_end)


def status_sample(look: StatusLook, *, own: Rgb, since: float, now: float) -> Rgb:
    color = Rgb.from_hex(look.color) if look.color else own
    phase = ((now - since) / look.period_seconds) % 1.0
    return color.scaled(look.level * swell(phase))
