"""The hardware seam: two small ports, and adapters that put them on real (or mock) pins.

Ports — all the rest of the lamp knows about hardware:

- ``TouchInput``: ``start(on_press=…, on_release=…)`` then ``close()``. The callbacks are called
  *from any thread* (gpiozero calls them from its own), so they should only put an event on the
  driver's queue (``TouchDown()`` / ``TouchUp()`` for ``LampCore``).
- ``LightOutput``: ``show(rgb)`` with output values (PWM duty, 0..1, as ``LampCore.frame``
  returns them) and ``close()``. Called from the driver's thread only.

Adapters, chosen by ``HardwareSettings`` through ``open_touch_input`` / ``open_light_output``:

- ``GpioTouch``: a TTP223-style touch module (push-pull output, high while touched; the pin is
  pulled down so an unplugged sensor reads "not touched") or a plain button to ground (pulled up,
  low while pressed), as a gpiozero ``DigitalInputDevice``;
- ``Mpr121Touch``: one electrode of an MPR121 on I2C, read when its IRQ pin falls (no polling);
  needs the ``mpr121`` extra;
- ``MonoLight``: one LED on a gpiozero ``PWMLED``; it shows intensity only (the brightest channel,
  or the luminance);
- ``RgbLight``: an RGB LED on a gpiozero ``RGBLED``; common anode inverts the pins;
- ``NeoPixelLight``: a WS2812 strip, all pixels one colour; needs the ``neopixel`` extra;
- ``NoTouch`` / ``NoLight``: nothing wired (a relay-only test box, a headless demo).

Every gpiozero adapter takes ``pin_factory``: the simulator and tests pass
``mock_pin_factory()`` (gpiozero's ``MockFactory`` with PWM-capable mock pins) and read the pins
back; library code never swaps gpiozero's global ``Device.pin_factory``. The optional libraries
are imported only when their adapter is built, and a missing one raises ``MissingExtraError``
naming the extra to install.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal, Protocol

from gpiozero import PWMLED, RGBLED, DigitalInputDevice, GPIOZeroError
from gpiozero.pins.mock import MockFactory, MockPWMPin

from touchlamp.config.device import HardwareSettings
from touchlamp.device.looks import Rgb

__all__ = [
    "GpioTouch",
    "HardwareError",
    "LightOutput",
    "MissingExtraError",
    "MonoLight",
    "Mpr121Touch",
    "NeoPixelLight",
    "NoLight",
    "NoTouch",
    "RgbLight",
    "TouchInput",
    "mock_pin_factory",
    "open_light_output",
    "open_touch_input",
]

Callback = Callable[[], None]
# gpiozero ships no type information; its pin factories are plain objects to us.
PinFactory = Any


class HardwareError(RuntimeError):
    """A touch sensor or light could not be opened or used; the message names it and the fix."""


class MissingExtraError(HardwareError):
    """An optional hardware library is not installed; the message names the extra to install."""


class TouchInput(Protocol):
    def start(self, *, on_press: Callback, on_release: Callback) -> None:
        """Begin reporting touches. The callbacks are called from any thread."""
        ...

    def close(self) -> None: ...


class LightOutput(Protocol):
    def show(self, rgb: Rgb) -> None:
        """Show output values (PWM duty, 0..1 per channel)."""
        ...

    def close(self) -> None: ...


def mock_pin_factory() -> PinFactory:
    """A fresh gpiozero ``MockFactory`` whose pins all do PWM (for the simulator and tests)."""
    return MockFactory(pin_class=MockPWMPin)


def _import_extra(module: str, *, extra: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({error.name or module} is not installed): "
            f"pip install 'touchlamp[{extra}]'"
        ) from error


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else min(value, 1.0)


# ---- touch ------------------------------------------------------------------------------------


class GpioTouch:
    """A digital touch sensor or button on one GPIO pin (gpiozero ``DigitalInputDevice``)."""

    def __init__(
        self,
        *,
        pin: int,
        kind: Literal["ttp223", "button"],
        bounce_seconds: float = 0.0,
        pin_factory: PinFactory = None,
    ) -> None:
        # TTP223: push-pull, high while touched; a pull-down keeps an unplugged sensor quiet.
        # Button: a switch to ground, so the internal pull-up makes it active low.
        pull_up = kind == "button"
        what = "touch sensor" if kind == "ttp223" else "button"
        try:
            self._device = DigitalInputDevice(
                pin,
                pull_up=pull_up,
                bounce_time=bounce_seconds or None,
                pin_factory=pin_factory,
            )
        except GPIOZeroError as error:
            raise HardwareError(
                f"cannot open the {what} on GPIO{pin}: {error}; check "
                "TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN, or run with --simulate off a Raspberry Pi"
            ) from error

    def start(self, *, on_press: Callback, on_release: Callback) -> None:
        # Plain zero-argument functions, so gpiozero does not pass itself as an argument.
        def pressed() -> None:
            on_press()

        def released() -> None:
            on_release()

        self._device.when_activated = pressed
        self._device.when_deactivated = released

    def close(self) -> None:
        self._device.close()


class Mpr121Touch:
    """One electrode of an MPR121 capacitive sensor (I2C), read when its IRQ pin goes low.

    The MPR121 pulls IRQ low whenever an electrode's state changes and releases it once the touch
    status is read, so the lamp reads the chip only on a change — no polling. ``sensor`` is an
    object with ``touched() -> int`` (a bit mask of electrodes); by default the
    ``adafruit_mpr121`` driver on the board's I2C bus.
    """

    def __init__(
        self,
        *,
        channel: int,
        irq_pin: int,
        address: int = 0x5A,
        pin_factory: PinFactory = None,
        sensor: Any = None,
    ) -> None:
        if sensor is None:
            sensor = _open_mpr121(address)
        self._sensor = sensor
        self._mask = 1 << channel
        self._touched = False
        self._on_press: Callback | None = None
        self._on_release: Callback | None = None
        # gpiozero may call the IRQ handler from its thread while start() runs on another.
        self._lock = threading.Lock()
        try:
            self._irq = DigitalInputDevice(irq_pin, pull_up=True, pin_factory=pin_factory)
        except GPIOZeroError as error:
            raise HardwareError(
                f"cannot open the MPR121 IRQ pin GPIO{irq_pin}: {error}; "
                "check TOUCHLAMP_DEVICE_HARDWARE__MPR121_IRQ_PIN"
            ) from error

    def start(self, *, on_press: Callback, on_release: Callback) -> None:
        with self._lock:
            self._on_press, self._on_release = on_press, on_release
        self._irq.when_activated = self._changed
        self._changed()  # read once: clears a pending IRQ and catches a touch already present

    def _changed(self) -> None:
        touched = bool(int(self._sensor.touched()) & self._mask)
        with self._lock:
            if touched == self._touched:
                return
            self._touched = touched
            callback = self._on_press if touched else self._on_release
        if callback is not None:
            callback()

    def close(self) -> None:
        self._irq.close()


def _open_mpr121(address: int) -> Any:
    mpr121 = _import_extra("adafruit_mpr121", extra="mpr121", what="the MPR121 touch sensor")
    board = _import_extra("board", extra="mpr121", what="the MPR121 touch sensor")
    busio = _import_extra("busio", extra="mpr121", what="the MPR121 touch sensor")
    try:
        return mpr121.MPR121(busio.I2C(board.SCL, board.SDA), address=address)
    except (OSError, ValueError, RuntimeError) as error:
        raise HardwareError(
            f"no MPR121 answers at I2C address {address:#04x}: {error}; enable I2C "
            "(raspi-config) and check the wiring and TOUCHLAMP_DEVICE_HARDWARE__MPR121_ADDRESS"
        ) from error


class NoTouch:
    """No touch input wired: never reports anything."""

    def start(self, *, on_press: Callback, on_release: Callback) -> None:
        pass

    def close(self) -> None:
        pass


# ---- light ------------------------------------------------------------------------------------


class MonoLight:
    """One LED on a PWM pin (gpiozero ``PWMLED``): shows a colour's intensity only."""

    def __init__(
        self,
        *,
        pin: int,
        active_high: bool = True,
        mono_from: Literal["max", "luminance"] = "max",
        pin_factory: PinFactory = None,
    ) -> None:
        self._intensity: Callable[[Rgb], float] = (
            Rgb.max_channel if mono_from == "max" else Rgb.luminance
        )
        try:
            self._led = PWMLED(pin, active_high=active_high, pin_factory=pin_factory)
        except GPIOZeroError as error:
            raise HardwareError(
                f"cannot open the LED on GPIO{pin}: {error}; check "
                "TOUCHLAMP_DEVICE_HARDWARE__LED_PIN, or run with --simulate off a Raspberry Pi"
            ) from error

    def show(self, rgb: Rgb) -> None:
        self._led.value = _clamp(self._intensity(rgb))

    def close(self) -> None:
        self._led.close()


class RgbLight:
    """An RGB LED on three PWM pins (gpiozero ``RGBLED``).

    A common-anode LED shares its + leg, so a channel lights when its pin is *low*:
    ``common_anode=True`` makes gpiozero invert the pins (``active_high=False``).
    """

    def __init__(
        self,
        *,
        red: int,
        green: int,
        blue: int,
        common_anode: bool = False,
        pin_factory: PinFactory = None,
    ) -> None:
        try:
            self._led = RGBLED(
                red, green, blue, active_high=not common_anode, pin_factory=pin_factory
            )
        except GPIOZeroError as error:
            raise HardwareError(
                f"cannot open the RGB LED on GPIO{red}/{green}/{blue}: {error}; check "
                "TOUCHLAMP_DEVICE_HARDWARE__RED_PIN / __GREEN_PIN / __BLUE_PIN, "
                "or run with --simulate off a Raspberry Pi"
            ) from error

    def show(self, rgb: Rgb) -> None:
        self._led.value = (_clamp(rgb.r), _clamp(rgb.g), _clamp(rgb.b))

    def close(self) -> None:
        self._led.close()


class NeoPixelLight:
    """A WS2812 ("NeoPixel") strip, every pixel the same colour; needs the ``neopixel`` extra.

    ``pixels`` is an object like ``neopixel.NeoPixel`` (``fill`` and ``show``); by default one is
    opened on ``pin`` (a ``board`` name such as ``"D18"``). Values are quantised to 8 bits.
    """

    def __init__(
        self,
        *,
        pin: str = "D18",
        count: int = 12,
        order: str = "GRB",
        pixels: Any = None,
    ) -> None:
        if pixels is None:
            pixels = _open_neopixel(pin=pin, count=count, order=order)
        self._pixels = pixels
        self._white = len(order) == 4

    def show(self, rgb: Rgb) -> None:
        channels = tuple(round(_clamp(value) * 255) for value in rgb)
        self._pixels.fill((*channels, 0) if self._white else channels)
        self._pixels.show()

    def close(self) -> None:
        self._pixels.fill((0, 0, 0, 0) if self._white else (0, 0, 0))
        self._pixels.show()
        self._pixels.deinit()


def _open_neopixel(*, pin: str, count: int, order: str) -> Any:
    neopixel = _import_extra("neopixel", extra="neopixel", what="a NeoPixel strip")
    board = _import_extra("board", extra="neopixel", what="a NeoPixel strip")
    board_pin = getattr(board, pin, None)
    if board_pin is None:
        raise HardwareError(
            f"this board has no pin {pin}; set TOUCHLAMP_DEVICE_HARDWARE__NEOPIXEL_PIN "
            "to one it has (D18, D12, D21 or D10 on a Raspberry Pi)"
        )
    try:
        return neopixel.NeoPixel(
            board_pin,
            count,
            brightness=1.0,  # the lamp core already applied the brightness cap
            auto_write=False,
            pixel_order=getattr(neopixel, order),
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise HardwareError(
            f"cannot drive a NeoPixel strip on {pin}: {error}; the strip needs root "
            "(or the SPI pin D10) and a supported Raspberry Pi"
        ) from error


class NoLight:
    """No light wired: shows nothing."""

    def show(self, rgb: Rgb) -> None:
        pass

    def close(self) -> None:
        pass


# ---- from settings ----------------------------------------------------------------------------


def open_touch_input(hardware: HardwareSettings, *, pin_factory: PinFactory = None) -> TouchInput:
    """The touch input ``hardware`` describes, on ``pin_factory``'s pins (gpiozero's default
    factory — the real pins — when ``None``)."""
    match hardware.touch_kind:
        case "ttp223" | "button":
            return GpioTouch(
                pin=hardware.touch_pin,
                kind=hardware.touch_kind,
                bounce_seconds=hardware.touch_bounce_seconds,
                pin_factory=pin_factory,
            )
        case "mpr121":
            return Mpr121Touch(
                channel=hardware.mpr121_channel,
                irq_pin=hardware.mpr121_irq_pin,
                address=hardware.mpr121_address,
                pin_factory=pin_factory,
            )
        case "none":
            return NoTouch()


def open_light_output(hardware: HardwareSettings, *, pin_factory: PinFactory = None) -> LightOutput:
    """The light ``hardware`` describes, on ``pin_factory``'s pins (see ``open_touch_input``)."""
    match hardware.led_kind:
        case "mono":
            return MonoLight(
                pin=hardware.led_pin,
                active_high=hardware.led_active_high,
                mono_from=hardware.mono_from,
                pin_factory=pin_factory,
            )
        case "rgb":
            return RgbLight(
                red=hardware.red_pin,
                green=hardware.green_pin,
                blue=hardware.blue_pin,
                common_anode=hardware.rgb_common_anode,
                pin_factory=pin_factory,
            )
        case "neopixel":
            return NeoPixelLight(
                pin=hardware.neopixel_pin,
                count=hardware.neopixel_count,
                order=hardware.neopixel_order,
            )
        case "none":
            return NoLight()
