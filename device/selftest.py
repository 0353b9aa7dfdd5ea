"""``touchlamp device selftest``: for someone assembling a lamp, check the LED and the touch sensor.

The LED shows red, green, blue and white in turn (a channel that stays dark is a wiring or pin
problem you can see), then the lamp waits for a touch and reports it. Nothing needs the network.
"""

from __future__ import annotations

import threading
from typing import TextIO

from touchlamp.config.device import HardwareSettings
from touchlamp.config.looks import LookSettings
from touchlamp.device.hardware import PinFactory, open_light_output, open_touch_input
from touchlamp.device.looks import BLACK, Rgb, to_output

__all__ = ["COLOURS", "run_selftest"]

COLOURS = (
    ("red", Rgb(1.0, 0.0, 0.0)),
    ("green", Rgb(0.0, 1.0, 0.0)),
    ("blue", Rgb(0.0, 0.0, 1.0)),
    ("white", Rgb(1.0, 1.0, 1.0)),
)


def run_selftest(
    *,
    hardware: HardwareSettings,
    looks: LookSettings,
    out: TextIO,
    touch_timeout: float,
    step_seconds: float = 1.0,
    pin_factory: PinFactory = None,
) -> bool:
    """Cycle the LED, then wait up to ``touch_timeout`` s for a touch; True if one came."""
    light = open_light_output(hardware, pin_factory=pin_factory)
    try:
        touch = open_touch_input(hardware, pin_factory=pin_factory)
    except BaseException:
        light.close()
        raise
    pressed = threading.Event()
    released = threading.Event()
    pause = threading.Event()  # never set: waits that a signal (Ctrl-C) can interrupt
    try:
        out.write(f"LED ({hardware.led_kind}):\n")
        for name, colour in COLOURS:
            light.show(to_output(colour, gamma=looks.gamma, cap=looks.max_brightness))
            out.write(f"  {name}\n")
            out.flush()
            pause.wait(step_seconds)
        light.show(BLACK)
        if hardware.touch_kind == "none":
            out.write("Touch: none configured (TOUCHLAMP_DEVICE_HARDWARE__TOUCH_KIND=none).\n")
            return True
        where = (
            f"GPIO{hardware.touch_pin}"
            if hardware.touch_kind != "mpr121"
            else f"MPR121 channel {hardware.mpr121_channel}"
        )
        touch.start(on_press=pressed.set, on_release=released.set)
        out.write(
            f"Touch the lamp now ({hardware.touch_kind} on {where}; waiting {touch_timeout:g} s)…\n"
        )
        out.flush()
        if not pressed.wait(touch_timeout):
            out.write(
                f"No touch within {touch_timeout:g} s. Check the sensor's wiring and "
                f"TOUCHLAMP_DEVICE_HARDWARE__TOUCH_KIND / __TOUCH_PIN ({hardware.touch_kind}, "
                f"{where}).\n"
            )
            return False
        light.show(to_output(Rgb(1.0, 1.0, 1.0), gamma=looks.gamma, cap=looks.max_brightness))
        out.write("  touched\n")
        out.flush()
        if released.wait(touch_timeout):
            out.write("  released\n")
        light.show(BLACK)
        out.write("The LED and the touch sensor work.\n")
        return True
    finally:
        touch.close()
        light.close()
