"""Colours and the curves the lamp's light follows: pure functions, no state.

Two spaces appear in the lamp. *Perceived* values are what the eye judges: a fade that lowers
the perceived level by the same amount each second looks even. *Output* values are PWM duty
cycles (or NeoPixel intensities), proportional to emitted light. The eye's response is roughly a
power law, so ``output = perceived ** gamma`` (gamma about 2.2): half the perceived brightness is
about a fifth of the light. The lamp core works in perceived values and converts each frame once
(``to_output``); a screen that draws the pins' values (the simulator page) converts back with
``to_perceived``, since a screen applies its own gamma.

``"#rrggbb"`` colours (the wire's form) are perceived values, like sRGB on a screen.
"""

from __future__ import annotations

import colorsys
import math
from typing import NamedTuple

from touchlamp.protocol.messages import color_to_rgb, rgb_to_color

__all__ = [
    "BLACK",
    "Rgb",
    "from_hue",
    "mix",
    "smoothstep",
    "swell",
    "to_output",
    "to_perceived",
]


class Rgb(NamedTuple):
    """Three channels in 0..1. A tuple, so ``RGBLED.value = rgb`` and ``r, g, b = rgb`` work."""

    r: float
    g: float
    b: float

    @classmethod
    def from_hex(cls, color: str) -> Rgb:
        """``"#ff8000"`` → ``Rgb(1.0, 0.502, 0.0)``; raises ``ValueError`` for any other form."""
        return cls(*color_to_rgb(color))

    def to_hex(self) -> str:
        return rgb_to_color(self.r, self.g, self.b)

    def scaled(self, factor: float) -> Rgb:
        return Rgb(self.r * factor, self.g * factor, self.b * factor)

    def clamped(self) -> Rgb:
        return Rgb(_clamp(self.r), _clamp(self.g), _clamp(self.b))

    def max_channel(self) -> float:
        return max(self.r, self.g, self.b)

    def luminance(self) -> float:
        """Relative luminance of *output* (linear-light) values, Rec. 709 weights."""
        return 0.2126 * self.r + 0.7152 * self.g + 0.0722 * self.b

    def hue(self) -> float:
        """Hue in 0..1 (0 red, 1/3 green, 2/3 blue); 0 for greys."""
        return colorsys.rgb_to_hsv(*self.clamped())[0]


BLACK = Rgb(0.0, 0.0, 0.0)


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else min(value, 1.0)


def to_output(perceived: Rgb, *, gamma: float, cap: float = 1.0) -> Rgb:
    """Perceived → output (PWM duty): ``channel ** gamma``, then scaled by the brightness cap.

    The cap scales rather than clips, so a capped colour keeps its hue.
    """
    clamped = perceived.clamped()
    return Rgb(
        clamped.r**gamma * cap,
        clamped.g**gamma * cap,
        clamped.b**gamma * cap,
    )


def to_perceived(output: Rgb, *, gamma: float) -> Rgb:
    """Output (PWM duty) → perceived, the inverse of ``to_output`` without a cap."""
    clamped = output.clamped()
    inverse = 1.0 / gamma
    return Rgb(clamped.r**inverse, clamped.g**inverse, clamped.b**inverse)


def mix(first: Rgb, second: Rgb, weight: float) -> Rgb:
    """``first`` at weight 0, ``second`` at weight 1, a straight blend between."""
    keep = 1.0 - weight
    return Rgb(
        first.r * keep + second.r * weight,
        first.g * keep + second.g * weight,
        first.b * keep + second.b * weight,
    )


def from_hue(hue: float) -> Rgb:
    """The fully saturated, full-value colour of ``hue`` (taken modulo 1)."""
    return Rgb(*colorsys.hsv_to_rgb(hue % 1.0, 1.0, 1.0))


def smoothstep(x: float) -> float:
    """0 → 1 with zero slope at both ends (for rises that should not jump)."""
    x = _clamp(x)
    return x * x * (3.0 - 2.0 * x)


def swell(x: float) -> float:
    """One soft swell over ``x`` in 0..1: 0, up to 1 at the middle, back to 0 (``sin²(πx)``)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return math.sin(math.pi * x) ** 2
