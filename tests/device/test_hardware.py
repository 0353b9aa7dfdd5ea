"""The hardware seam on gpiozero's own mock pins: touches in, PWM values out."""

from __future__ import annotations

import datetime as dt
import os
import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from touchlamp.config.device import HardwareSettings
from touchlamp.config.looks import LookSettings, QuietHours
from touchlamp.device.clock import ManualClock
from touchlamp.device.core import LampCore, SendTouch
from touchlamp.device.events import Connected, Event, GroupChanged, Member, TouchDown, TouchUp
from touchlamp.device.hardware import (
    GpioTouch,
    HardwareError,
    MissingExtraError,
    MonoLight,
    Mpr121Touch,
    NeoPixelLight,
    NoLight,
    NoTouch,
    RgbLight,
    mock_pin_factory,
    open_light_output,
    open_touch_input,
    pin_error,
)
from touchlamp.device.looks import Rgb


@pytest.fixture
def factory() -> Iterator[Any]:
    pins = mock_pin_factory()
    yield pins
    pins.close()


def _recorder() -> tuple[queue.SimpleQueue[str], dict[str, Any]]:
    seen: queue.SimpleQueue[str] = queue.SimpleQueue()
    return seen, {
        "on_press": lambda: seen.put("press"),
        "on_release": lambda: seen.put("release"),
    }


def _drain(seen: queue.SimpleQueue[str]) -> list[str]:
    items = []
    while not seen.empty():
        items.append(seen.get_nowait())
    return items


# ---- touch --------------------------------------------------------------------------------------


def test_a_ttp223_reports_high_as_touched(factory: Any) -> None:
    touch = GpioTouch(pin=17, kind="ttp223", pin_factory=factory)
    seen, callbacks = _recorder()
    touch.start(**callbacks)
    pin = factory.pin(17)
    assert pin.state == 0  # pulled down: an unplugged sensor is not a touch

    pin.drive_high()
    pin.drive_low()

    assert _drain(seen) == ["press", "release"]
    touch.close()


def test_a_button_is_pulled_up_and_pressed_when_low(factory: Any) -> None:
    touch = GpioTouch(pin=27, kind="button", bounce_seconds=0.02, pin_factory=factory)
    seen, callbacks = _recorder()
    touch.start(**callbacks)
    pin = factory.pin(27)
    assert pin.state == 1

    pin.drive_low()
    pin.drive_high()

    assert _drain(seen) == ["press", "release"]
    touch.close()


def test_touch_pins_drive_the_lamp_core_and_the_core_drives_the_led_pins(factory: Any) -> None:
    hardware = HardwareSettings(touch_kind="ttp223", touch_pin=17, touch_bounce_seconds=0.0)
    touch = open_touch_input(hardware, pin_factory=factory)
    light = open_light_output(hardware, pin_factory=factory)
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    touch.start(on_press=lambda: events.put(TouchDown()), on_release=lambda: events.put(TouchUp()))
    clock = ManualClock(start=dt.datetime(2026, 3, 10, 12, 0, tzinfo=ZoneInfo("UTC")))
    core = LampCore(
        lamp_id="lamp-a",
        color="#ff0000",
        looks=LookSettings(),
        quiet_hours=QuietHours(),
        local_time=clock.local_now,
        now=0.0,
    )
    core.handle(Connected(), 0.0)
    partner = Member(id="lamp-b", name="B", color="#0000ff", online=True)
    core.handle(GroupChanged(members=(partner,)), 0.0)

    factory.pin(17).drive_high()
    factory.pin(17).drive_low()
    effects = []
    for at in (1.0, 1.2):
        effects += core.handle(events.get_nowait(), clock.advance_to(at))

    assert effects == [SendTouch(color="#ff0000")]
    light.show(core.frame(1.8))  # the peak of the tap's swell
    red, green, blue = (factory.pin(n).state for n in (12, 13, 19))
    assert (red, green, blue) == pytest.approx((1.0, 0.0, 0.0))
    touch.close()
    light.close()


def test_an_mpr121_reads_the_chip_only_when_its_irq_pin_falls(factory: Any) -> None:
    class FakeChip:  # the adafruit_mpr121.MPR121 surface used here
        def __init__(self) -> None:
            self.mask = 0
            self.reads = 0

        def touched(self) -> int:
            self.reads += 1
            return self.mask

    chip = FakeChip()
    touch = Mpr121Touch(channel=3, irq_pin=4, pin_factory=factory, sensor=chip)
    seen, callbacks = _recorder()
    touch.start(**callbacks)
    irq = factory.pin(4)
    reads_at_start = chip.reads

    chip.mask = 0b1000  # electrode 3 touched
    irq.drive_low()
    irq.drive_high()  # the chip releases IRQ once read
    chip.mask = 0b1001  # electrode 0 joins: not ours, no event
    irq.drive_low()
    irq.drive_high()
    chip.mask = 0b0001
    irq.drive_low()
    irq.drive_high()

    assert _drain(seen) == ["press", "release"]
    assert chip.reads == reads_at_start + 3
    touch.close()


def test_no_touch_and_no_light_do_nothing() -> None:
    hardware = HardwareSettings(touch_kind="none", led_kind="none")
    touch, light = open_touch_input(hardware), open_light_output(hardware)
    assert isinstance(touch, NoTouch)
    assert isinstance(light, NoLight)
    touch.start(on_press=lambda: None, on_release=lambda: None)
    light.show(Rgb(1.0, 1.0, 1.0))


BUSY_TOUCH = (
    "cannot open the button on GPIO17: the pin is busy (another program or a kernel driver "
    "holds it; `pinctrl get` shows what each pin is set to); stop that program or free the pin, "
    "or wire the button to another pin and set TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN"
)


def test_a_pin_already_in_use_is_named_busy_with_the_setting_to_change(factory: Any) -> None:
    first = GpioTouch(pin=17, kind="ttp223", pin_factory=factory)
    with pytest.raises(HardwareError) as raised:
        GpioTouch(pin=17, kind="button", pin_factory=factory)
    assert str(raised.value) == BUSY_TOUCH
    first.close()


def test_a_pin_another_process_holds_is_named_busy() -> None:
    """lgpio's own error for a pin claimed elsewhere (its text is "GPIO busy"), which gpiozero
    lets through rather than wrapping."""

    class LgpioError(Exception):  # the shape of lgpio.error: its message is lgpio's text
        pass

    error = pin_error(
        LgpioError("GPIO busy"),
        what="button",
        pins="GPIO17",
        setting="TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN",
    )
    assert str(error) == BUSY_TOUCH
    other = pin_error(
        LgpioError("bad GPIO number"),
        what="LED",
        pins="GPIO99",
        setting="TOUCHLAMP_DEVICE_HARDWARE__LED_PIN",
    )
    assert str(other) == (
        "cannot open the LED on GPIO99: bad GPIO number; check TOUCHLAMP_DEVICE_HARDWARE__LED_PIN"
    )


# ---- light --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("common_anode", "expected"),
    [
        (False, (1.0, 0.25, 0.0)),
        (True, (0.0, 0.75, 1.0)),  # common anode: a channel lights when its pin is low
    ],
)
def test_an_rgb_led_shows_the_frame_on_its_pwm_pins(
    factory: Any, common_anode: bool, expected: tuple[float, float, float]
) -> None:
    light = RgbLight(red=12, green=13, blue=19, common_anode=common_anode, pin_factory=factory)
    light.show(Rgb(1.0, 0.25, 0.0))
    assert tuple(factory.pin(n).state for n in (12, 13, 19)) == pytest.approx(expected)
    light.close()


@pytest.mark.parametrize(
    ("mono_from", "shown"),
    [
        ("max", 0.5),  # the brightest channel: a blue glow is as bright as a white one
        ("luminance", 0.2126 * 0.2 + 0.7152 * 0.1 + 0.0722 * 0.5),
    ],
)
def test_a_mono_led_shows_intensity_only(factory: Any, mono_from: Any, shown: float) -> None:
    hardware = HardwareSettings(led_kind="mono", led_pin=18, mono_from=mono_from)
    light = open_light_output(hardware, pin_factory=factory)
    assert isinstance(light, MonoLight)
    light.show(Rgb(0.2, 0.1, 0.5))
    assert factory.pin(18).state == pytest.approx(shown)
    light.show(Rgb(1.0, 1.0, 1.0))  # luminance weights add up to 1 (give or take a rounding)
    assert factory.pin(18).state == pytest.approx(1.0)
    light.close()


def test_an_active_low_mono_led_is_inverted(factory: Any) -> None:
    light = MonoLight(pin=18, active_high=False, pin_factory=factory)
    light.show(Rgb(0.3, 0.0, 0.0))
    assert factory.pin(18).state == pytest.approx(0.7)
    light.close()


def test_a_neopixel_strip_gets_8_bit_values() -> None:
    class FakeStrip:  # the neopixel.NeoPixel surface used here
        def __init__(self) -> None:
            self.filled: list[tuple[int, ...]] = []
            self.shown = 0
            self.closed = False

        def fill(self, color: tuple[int, ...]) -> None:
            self.filled.append(color)

        def show(self) -> None:
            self.shown += 1

        def deinit(self) -> None:
            self.closed = True

    strip = FakeStrip()
    light = NeoPixelLight(order="GRBW", pixels=strip)
    light.show(Rgb(1.0, 0.5, 0.0))
    light.close()
    assert strip.filled == [(255, 128, 0, 0), (0, 0, 0, 0)]
    assert strip.shown == 2
    assert strip.closed


# ---- optional extras ----------------------------------------------------------------------------


@pytest.fixture
def without_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports of the optional hardware libraries fail, as on a machine without the extras."""
    for name in ("neopixel_spi", "board", "busio", "adafruit_mpr121"):
        # None in sys.modules makes `import name` raise ModuleNotFoundError.
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("without_extras")
def test_a_neopixel_strip_without_its_extra_names_what_to_install(factory: Any) -> None:
    hardware = HardwareSettings(led_kind="neopixel")
    with pytest.raises(
        MissingExtraError,
        match=r"^a NeoPixel strip needs the 'neopixel' extra \(neopixel_spi is not installed\): "
        r"pip install 'touchlamp\[neopixel\]'$",
    ):
        open_light_output(hardware, pin_factory=factory)


@pytest.mark.usefixtures("without_extras")
def test_an_mpr121_without_its_extra_names_what_to_install(factory: Any) -> None:
    hardware = HardwareSettings(touch_kind="mpr121", led_kind="none")
    with pytest.raises(MissingExtraError, match=r"MPR121.*pip install 'touchlamp\[mpr121\]'"):
        open_touch_input(hardware, pin_factory=factory)


def test_the_optional_libraries_are_not_imported_unless_configured() -> None:
    import touchlamp.device.hardware  # noqa: F401  the import under test

    assert not {"neopixel_spi", "board", "busio", "adafruit_mpr121"} & set(sys.modules)


def test_a_neopixel_strip_on_a_pin_spi_cannot_drive_is_told_to_use_gpio10() -> None:
    with pytest.raises(HardwareError) as raised:
        NeoPixelLight(pin="D18")
    assert str(raised.value) == (
        "a NeoPixel strip is driven over SPI, so its data line goes to GPIO10 (MOSI, pin 19), "
        "not D18: rewire it and set TOUCHLAMP_DEVICE_HARDWARE__NEOPIXEL_PIN=D10"
    )


# ---- Adafruit Blinka on an emulated Raspberry Pi ----------------------------------------------
# Blinka identifies the board once per process and honours BLINKA_FORCEBOARD/BLINKA_FORCECHIP,
# so each case runs the real Blinka in a Python of its own, as on a Pi 4 or a Pi 5 (without
# their /dev/spidev0.0 and /dev/i2c-1: SPI and I2C are off, as on a fresh Raspberry Pi OS).

_OPEN = """
import sys
from touchlamp.config.device import HardwareSettings
from touchlamp.device.hardware import HardwareError, open_light_output, open_touch_input
for hidden in sys.argv[2:]:
    sys.modules[hidden] = None  # not installed
hardware = HardwareSettings(led_kind="neopixel", touch_kind="none")
if sys.argv[1] == "mpr121":
    hardware = HardwareSettings(led_kind="none", touch_kind="mpr121")
try:
    open_light_output(hardware, pin_factory=None)
    open_touch_input(hardware, pin_factory=None)
except HardwareError as error:
    print(f"{type(error).__name__}: {error}")
"""


def on_a_pi(board: str, part: str, *hidden: str) -> str:
    environment = {
        **os.environ,
        "BLINKA_FORCEBOARD": board,
        "BLINKA_FORCECHIP": "BCM2XXX",
        "GPIOZERO_PIN_FACTORY": "mock",  # the MPR121's IRQ line: gpiozero's mock pins
    }
    result = subprocess.run(
        [sys.executable, "-c", _OPEN, part, *hidden],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("board", ["RASPBERRY_PI_4B", "RASPBERRY_PI_5"])
def test_blinkas_missing_platform_library_is_one_line_naming_the_extra(board: str) -> None:
    """Blinka raises RuntimeError (not ImportError) when gpiod is missing: one line, no
    traceback, naming what to install."""
    assert on_a_pi(board, "neopixel", "gpiod") == (
        "MissingExtraError: a NeoPixel strip needs the platform library gpiod, which is not "
        "installed: pip install 'gpiod' into the lamp's Python (touchlamp's 'neopixel' extra "
        "declares it)"
    )
    assert on_a_pi(board, "mpr121", "gpiod") == (
        "MissingExtraError: the MPR121 touch sensor needs the platform library gpiod, which is "
        "not installed: pip install 'gpiod' into the lamp's Python (touchlamp's 'mpr121' extra "
        "declares it)"
    )


@pytest.mark.parametrize("board", ["RASPBERRY_PI_4B", "RASPBERRY_PI_5"])
def test_spi_and_i2c_turned_off_are_named_with_the_command_that_turns_them_on(board: str) -> None:
    # This test is about a Pi with SPI and I2C off.
    assert not Path("/dev/spidev0.0").exists()
    assert not Path("/dev/i2c-1").exists()
    assert on_a_pi(board, "neopixel") == (
        "HardwareError: a NeoPixel strip needs SPI, which is off (/dev/spidev0.0 does not "
        "exist): sudo raspi-config nonint do_spi 0, then reboot"
    )
    assert on_a_pi(board, "mpr121") == (
        "HardwareError: the MPR121 touch sensor needs I2C, which is off (/dev/i2c-1 does not "
        "exist): sudo raspi-config nonint do_i2c 0, then reboot"
    )
