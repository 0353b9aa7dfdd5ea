"""Opening a Raspberry Pi's GPIO pins for gpiozero, with a failure named by its cause.

Left to itself, gpiozero tries four pin libraries in turn, warns (``PinFactoryFallback``) for
each that fails, and ends with "Unable to load any default pin factory!" — true, but the cause
is one of a few, each with its own fix. So the lamp opens lgpio's factory itself (gpiozero's
default, and the only one that works on a Pi 5) after looking at what would stop it:

1. there is no ``/dev/gpiochip*``: not a Raspberry Pi (where the pin driver would not help),
   or a kernel without its GPIO driver;
2. lgpio is not installed, does not load, or is the empty placeholder ``lgpio 0.0.0.2`` that
   pip takes where no lgpio wheel fits the system (DEPLOY.md, "The pin driver");
3. no ``/dev/gpiochip*`` may be opened (the user is not in group ``gpio``).

A pin another program holds is named when a device opens it (``hardware.pin_error``).
``look_at_gpio`` gathers the facts, ``gpio_problem`` (pure) judges them, ``open_pin_factory``
does both and opens the factory. ``GPIOZERO_PIN_FACTORY``, when set, is the user's choice of
factory (a remote pigpio, a mock): gpiozero honours it and the lamp stays out of the way.
"""

from __future__ import annotations

import getpass
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from touchlamp.config.device import HardwareSettings
from touchlamp.device.hardware import HardwareError, PinFactory

__all__ = [
    "GpioFacts",
    "GpioUnavailableError",
    "LgpioState",
    "gpio_problem",
    "lgpio_state",
    "look_at_gpio",
    "open_pin_factory",
    "uses_gpio",
]

LgpioState = Literal["installed", "missing", "empty", "broken"]
_PREFIX = "cannot use the GPIO pins: "


class GpioUnavailableError(HardwareError):
    """The GPIO pins cannot be used at all; the message names the cause and the fix.

    ``off_a_pi``: there is no GPIO chip here, so trying the lamp without hardware
    (``device run --simulate``) is the likely wish."""

    def __init__(self, message: str, *, off_a_pi: bool = False) -> None:
        super().__init__(message)
        self.off_a_pi = off_a_pi


@dataclass(frozen=True, kw_only=True)
class GpioFacts:
    """What decides whether gpiozero can open the pins through lgpio."""

    lgpio: LgpioState
    lgpio_detail: str = ""  # why a broken lgpio does not load
    chips: tuple[Path, ...] = ()
    openable: tuple[Path, ...] = ()  # the chips this user may read and write
    user: str = "this user"


def uses_gpio(hardware: HardwareSettings) -> bool:
    """Whether the wiring puts anything on gpiozero's pins (a NeoPixel strip is on SPI, an
    MPR121 on I2C with its IRQ line on a GPIO pin)."""
    return hardware.touch_kind != "none" or hardware.led_kind in ("mono", "rgb")


def lgpio_state() -> tuple[LgpioState, str]:
    """Whether lgpio imports, and is the real library (the placeholder has no functions)."""
    try:
        module = importlib.import_module("lgpio")
    except ModuleNotFoundError as error:
        if error.name == "lgpio":
            return "missing", ""
        return "broken", str(error)
    except ImportError as error:  # e.g. its shared library does not load on this system
        return "broken", str(error)
    return ("installed" if hasattr(module, "gpiochip_open") else "empty"), ""


def look_at_gpio(
    dev_dir: Path = Path("/dev"),
    *,
    lgpio: Callable[[], tuple[LgpioState, str]] = lgpio_state,
    may_open: Callable[[Path], bool] = lambda path: os.access(path, os.R_OK | os.W_OK),
) -> GpioFacts:
    state, detail = lgpio()
    chips = tuple(sorted(dev_dir.glob("gpiochip*")))
    return GpioFacts(
        lgpio=state,
        lgpio_detail=detail,
        chips=chips,
        openable=tuple(chip for chip in chips if may_open(chip)),
        user=_user(),
    )


def gpio_problem(facts: GpioFacts, *, dev_dir: Path = Path("/dev")) -> GpioUnavailableError | None:
    """The first thing in ``facts`` that stops the pins from working, as the error to show."""
    if not facts.chips:
        return GpioUnavailableError(
            f"{_PREFIX}there is no GPIO chip ({dev_dir}/gpiochip*): this is not a Raspberry Pi, "
            "or its kernel has no GPIO driver; run the lamp on a Raspberry Pi with Raspberry "
            "Pi OS",
            off_a_pi=True,
        )
    match facts.lgpio:
        case "missing":
            return GpioUnavailableError(
                f"{_PREFIX}the pin driver lgpio is not installed; install it into the lamp's "
                "Python: pip install 'lgpio>=0.2.2' (touchlamp's 'pi' extra), or on Raspberry Pi "
                "OS sudo apt install python3-lgpio for a venv made with --system-site-packages"
            )
        case "empty":
            return GpioUnavailableError(
                f"{_PREFIX}the installed lgpio is an empty placeholder (lgpio 0.0.0.2, which pip "
                "takes where no lgpio wheel fits this system; wheels need 64-bit Raspberry Pi OS "
                "bookworm and Python 3.11); remove it (pip uninstall lgpio) and install "
                "python3-lgpio (sudo apt install python3-lgpio), or reinstall on 64-bit "
                "Raspberry Pi OS"
            )
        case "broken":
            return GpioUnavailableError(
                f"{_PREFIX}the pin driver lgpio does not load ({facts.lgpio_detail}); reinstall "
                "it: pip install --force-reinstall 'lgpio>=0.2.2'"
            )
        case "installed":
            pass
    if not facts.openable:
        return GpioUnavailableError(
            f"{_PREFIX}permission denied on {facts.chips[0]}: {facts.user} is not in group "
            f"gpio; add it (sudo usermod -aG gpio {facts.user}, then log in again), or run the "
            "lamp as the service `touchlamp device install` sets up"
        )
    return None


def open_pin_factory(
    hardware: HardwareSettings, *, dev_dir: Path = Path("/dev")
) -> PinFactory | None:
    """lgpio's pin factory for the Pi's pins, or ``None`` when nothing is wired to GPIO pins or
    ``GPIOZERO_PIN_FACTORY`` names one (gpiozero then opens that one itself).

    Raises ``GpioUnavailableError`` naming what stops the pins from working."""
    if not uses_gpio(hardware) or os.environ.get("GPIOZERO_PIN_FACTORY"):
        return None
    problem = gpio_problem(look_at_gpio(dev_dir), dev_dir=dev_dir)
    if problem is not None:
        raise problem
    from gpiozero.pins.lgpio import LGPIOFactory  # noqa: PLC0415  it imports lgpio: on a Pi only

    lgpio_error: type[Exception] = importlib.import_module("lgpio").error
    try:
        return LGPIOFactory()
    except lgpio_error as error:
        raise GpioUnavailableError(
            f"{_PREFIX}lgpio cannot open the GPIO chip ({error}); check that the user may "
            "use /dev/gpiochip* (group gpio) and that no other program holds the chip"
        ) from error


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a dynamic user systemd made up may have no name to look up
        return f"uid {os.getuid()}"
