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
back; library code never swaps gpiozero's global ``Device.pin_factory``. On a Raspberry Pi the
lamp passes the factory ``touchlamp.device.gpio.open_pin_factory`` opened, which names what
stops the GPIO pins from working (driver, chip, permission) before any pin is touched; a pin
another program holds is named here as busy. The optional libraries are imported only when
their adapter is built, and a missing one (or a platform library Adafruit Blinka misses, which
it reports as ``RuntimeError``) raises ``MissingExtraError`` naming the extra to install.

Over 500 lines on purpose: the seam is read as one when wiring a lamp (both ports, every adapter,
the choice from settings), and its adapters share the error-naming helpers at its top.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from gpiozero import (
    PWMLED,
    RGBLED,
    DigitalInputDevice,
    GPIOPinInUse,
    GPIOZeroError,
    PinFactoryFallback,
)
from gpiozero.pins.mock import MockFactory, MockPWMPin

from touchlamp.config.device import HardwareSettings
from touchlamp.device.looks import Rgb
from touchlamp.errors import ConfigurationError

__all__ = [
    "NEOPIXEL_SPI_PIN",
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
    "pin_error",
]

Callback = Callable[[], None]
NEOPIXEL_SPI_PIN = "D10"
"""A NeoPixel strip's data line: SPI0's MOSI, GPIO10 (header pin 19)."""
SPI_DEVICE = Path("/dev/spidev0.0")
I2C_DEVICE = Path("/dev/i2c-1")  # the bus on the header's SDA/SCL pins
# gpiozero ships no type information; its pin factories are plain objects to us.
PinFactory = Any


class HardwareError(ConfigurationError, RuntimeError):
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
    """Import an optional hardware library; every way it can fail becomes one line naming the
    cause and the fix (no traceback)."""
    # Blinka offers to pip-install missing platform libraries when run from a terminal: the
    # lamp declares them in its extras instead, and `selftest` must not stop on a prompt.
    os.environ.setdefault("BLINKA_SKIP_DEPENDENCY_CHECK", "1")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({error.name or module} is not installed): "
            f"pip install 'touchlamp[{extra}]'"
        ) from error
    except NotImplementedError as error:
        # Blinka's board module on a board it does not know.
        raise HardwareError(
            f"{what} needs a board Adafruit Blinka knows ({_first_line(error)}); "
            "use a Raspberry Pi, or run the simulator (`touchlamp sim`) elsewhere"
        ) from error
    except RuntimeError as error:
        # Adafruit Blinka turns a missing platform library into a RuntimeError (from the
        # ModuleNotFoundError naming it), with a multi-line pip hint of its own.
        cause = error.__cause__
        missing = cause.name if isinstance(cause, ImportError) and cause.name else None
        if missing is None:
            raise HardwareError(
                f"{what}: Adafruit Blinka cannot start on this board "
                f"({_first_line(error)}); pip install --upgrade 'touchlamp[{extra}]'"
            ) from error
        raise MissingExtraError(
            f"{what} needs the platform library {missing}, which is not installed: "
            f"pip install '{missing}' into the lamp's Python (touchlamp's '{extra}' extra "
            "declares it)"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def pin_error(error: BaseException, *, what: str, pins: str, setting: str) -> HardwareError:
    """The one-line error for a GPIO device that could not be opened: a busy pin is named as
    such (another program or a kernel driver holds it), anything else with the setting to check."""
    if isinstance(error, GPIOPinInUse) or "busy" in str(error).lower():
        return HardwareError(
            f"cannot open the {what} on {pins}: the pin is busy (another program or a kernel "
            f"driver holds it; `pinctrl get` shows what each pin is set to); stop that program "
            f"or free the pin, or wire the {what} to another pin and set {setting}"
        )
    return HardwareError(f"cannot open the {what} on {pins}: {_first_line(error)}; check {setting}")


def _pin_errors() -> tuple[type[BaseException], ...]:
    """What opening a gpiozero device raises: gpiozero's errors, and lgpio's own ``lgpio.error``
    (a pin claimed by another process), which gpiozero lets through."""
    lgpio = sys.modules.get("lgpio")
    lgpio_error = getattr(lgpio, "error", None)
    extra = (lgpio_error,) if isinstance(lgpio_error, type) else ()
    return (GPIOZeroError, OSError, *extra)


@contextlib.contextmanager
def _no_fallback_warnings() -> Iterator[None]:
    """gpiozero's default factory (no ``pin_factory`` given) warns once per pin library it
    tries before failing; the error raised after says it once, with its cause."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PinFactoryFallback)
        yield


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
            with _no_fallback_warnings():
                self._device = DigitalInputDevice(
                    pin,
                    pull_up=pull_up,
                    bounce_time=bounce_seconds or None,
                    pin_factory=pin_factory,
                )
        except _pin_errors() as error:
            raise pin_error(
                error,
                what=what,
                pins=f"GPIO{pin}",
                setting="TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN",
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
            with _no_fallback_warnings():
                self._irq = DigitalInputDevice(irq_pin, pull_up=True, pin_factory=pin_factory)
        except _pin_errors() as error:
            raise pin_error(
                error,
                what="MPR121's IRQ line",
                pins=f"GPIO{irq_pin}",
                setting="TOUCHLAMP_DEVICE_HARDWARE__MPR121_IRQ_PIN",
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
        bus = _bus_problem(I2C_DEVICE, bus="I2C", group="i2c", what="the MPR121 touch sensor")
        raise HardwareError(
            bus
            or f"no MPR121 answers at I2C address {address:#04x}: {_first_line(error)}; check the "
            "wiring (SDA pin 3, SCL pin 5) and TOUCHLAMP_DEVICE_HARDWARE__MPR121_ADDRESS"
        ) from error


def _bus_problem(device: Path, *, bus: Literal["SPI", "I2C"], group: str, what: str) -> str | None:
    """Why ``device`` (the Pi's SPI or I2C bus) cannot be used, when that is the cause."""
    if not device.exists():
        return (
            f"{what} needs {bus}, which is off ({device} does not exist): "
            f"sudo raspi-config nonint do_{bus.lower()} 0, then reboot"
        )
    if not os.access(device, os.R_OK | os.W_OK):
        return (
            f"permission denied on {device}: add the user to group {group} (sudo usermod -aG "
            f"{group} $USER, then log in again), or run the service `touchlamp device install` "
            "sets up"
        )
    return None


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
            with _no_fallback_warnings():
                self._led = PWMLED(pin, active_high=active_high, pin_factory=pin_factory)
        except _pin_errors() as error:
            raise pin_error(
                error, what="LED", pins=f"GPIO{pin}", setting="TOUCHLAMP_DEVICE_HARDWARE__LED_PIN"
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
            with _no_fallback_warnings():
                self._led = RGBLED(
                    red, green, blue, active_high=not common_anode, pin_factory=pin_factory
                )
        except _pin_errors() as error:
            raise pin_error(
                error,
                what="RGB LED",
                pins=f"GPIO{red}/{green}/{blue}",
                setting="TOUCHLAMP_DEVICE_HARDWARE__RED_PIN / __GREEN_PIN / __BLUE_PIN",
            ) from error

    def show(self, rgb: Rgb) -> None:
        self._led.value = (_clamp(rgb.r), _clamp(rgb.g), _clamp(rgb.b))

    def close(self) -> None:
        self._led.close()


class NeoPixelLight:
    """A WS2812 ("NeoPixel") strip, every pixel the same colour; needs the ``neopixel`` extra.

    ``pixels`` is an object like ``neopixel_spi.NeoPixel_SPI`` (``fill``, ``show``, ``deinit``);
    by default one is opened on the Pi's SPI bus, whose data line is GPIO10 (MOSI). SPI, not
    the PWM/DMA driver (``rpi_ws281x``): that one has no wheel for a Pi 4 (it needs a compiler)
    and a different, pre-release package on a Pi 5, while the SPI driver is pure Python on
    Blinka and works the same on both, without root. Values are quantised to 8 bits.
    """

    def __init__(
        self,
        *,
        pin: str = NEOPIXEL_SPI_PIN,
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
    if pin != NEOPIXEL_SPI_PIN:
        raise HardwareError(
            f"a NeoPixel strip is driven over SPI, so its data line goes to GPIO10 (MOSI, "
            f"pin 19), not {pin}: rewire it and set "
            f"TOUCHLAMP_DEVICE_HARDWARE__NEOPIXEL_PIN={NEOPIXEL_SPI_PIN}"
        )
    neopixel_spi = _import_extra("neopixel_spi", extra="neopixel", what="a NeoPixel strip")
    board = _import_extra("board", extra="neopixel", what="a NeoPixel strip")
    try:
        return neopixel_spi.NeoPixel_SPI(
            board.SPI(),
            count,
            brightness=1.0,  # the lamp core already applied the brightness cap
            auto_write=False,
            pixel_order=order,
        )
    except (OSError, ValueError, RuntimeError) as error:
        bus = _bus_problem(SPI_DEVICE, bus="SPI", group="spi", what="a NeoPixel strip")
        raise HardwareError(
            bus
            or f"cannot drive a NeoPixel strip over SPI: {_first_line(error)}; check the strip's "
            "wiring (data to GPIO10, pin 19) and its power"
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
