"""What stops a Raspberry Pi's GPIO pins from working, named by its cause (device/gpio.py), and
the lamp's exit on it: one line, exit code 2, no gpiozero fallback warnings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from touchlamp.config.device import HardwareSettings
from touchlamp.device.gpio import (
    GpioFacts,
    gpio_problem,
    lgpio_state,
    look_at_gpio,
    open_pin_factory,
    uses_gpio,
)


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    """A /dev with a Pi's GPIO chip in it (a plain file: only its name and mode are looked at)."""
    folder = tmp_path / "dev"
    folder.mkdir()
    (folder / "gpiochip0").touch()
    return folder


def problem(facts: GpioFacts, dev: Path) -> str | None:
    error = gpio_problem(facts, dev_dir=dev)
    return None if error is None else str(error)


def test_no_gpio_chip_means_not_a_raspberry_pi(tmp_path: Path) -> None:
    facts = look_at_gpio(tmp_path, lgpio=lambda: ("missing", ""))
    error = gpio_problem(facts, dev_dir=tmp_path)
    assert error is not None
    assert error.off_a_pi
    assert str(error) == (
        f"cannot use the GPIO pins: there is no GPIO chip ({tmp_path}/gpiochip*): this is not a "
        "Raspberry Pi, or its kernel has no GPIO driver; run the lamp on a Raspberry Pi with "
        "Raspberry Pi OS"
    )


def test_lgpio_not_installed_names_the_extra_and_the_package(
    dev: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lgpio", None)  # `import lgpio` fails as when not installed
    assert lgpio_state() == ("missing", "")
    assert problem(look_at_gpio(dev), dev) == (
        "cannot use the GPIO pins: the pin driver lgpio is not installed; install it into the "
        "lamp's Python: pip install 'lgpio>=0.2.2' (touchlamp's 'pi' extra), or on Raspberry Pi "
        "OS sudo apt install python3-lgpio for a venv made with --system-site-packages"
    )


def test_the_empty_lgpio_placeholder_is_detected(
    dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What pip installs as lgpio 0.0.0.2 where no wheel fits: a module with nothing in it."""
    placeholder = tmp_path / "site" / "lgpio"
    placeholder.mkdir(parents=True)
    (placeholder / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lgpio", raising=False)
    assert lgpio_state() == ("empty", "")
    assert problem(look_at_gpio(dev), dev) == (
        "cannot use the GPIO pins: the installed lgpio is an empty placeholder (lgpio 0.0.0.2, "
        "which pip takes where no lgpio wheel fits this system; wheels need 64-bit Raspberry Pi "
        "OS bookworm and Python 3.11); remove it (pip uninstall lgpio) and install python3-lgpio "
        "(sudo apt install python3-lgpio), or reinstall on 64-bit Raspberry Pi OS"
    )


def test_an_lgpio_that_does_not_load_says_why(
    dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "site" / "lgpio"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("import _lgpio_shared_library_that_is_not_here\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lgpio", raising=False)
    assert problem(look_at_gpio(dev), dev) == (
        "cannot use the GPIO pins: the pin driver lgpio does not load (No module named "
        "'_lgpio_shared_library_that_is_not_here'); reinstall it: pip install --force-reinstall "
        "'lgpio>=0.2.2'"
    )


def test_a_chip_the_user_may_not_open_is_permission_denied(dev: Path) -> None:
    # Injected: the tests may run as root, who may open anything.
    facts = look_at_gpio(dev, lgpio=lambda: ("installed", ""), may_open=lambda _chip: False)
    user = facts.user
    assert problem(facts, dev) == (
        f"cannot use the GPIO pins: permission denied on {dev}/gpiochip0: {user} is not in group "
        f"gpio; add it (sudo usermod -aG gpio {user}, then log in again), or run the lamp as "
        "the service `touchlamp device install` sets up"
    )


def test_a_pi_with_lgpio_and_an_openable_chip_has_no_problem(dev: Path) -> None:
    facts = look_at_gpio(dev, lgpio=lambda: ("installed", ""), may_open=lambda _chip: True)
    assert facts.openable == (dev / "gpiochip0",)
    assert gpio_problem(facts, dev_dir=dev) is None


def test_no_pins_are_opened_for_hardware_off_gpio_or_a_factory_the_user_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spi_only = HardwareSettings(led_kind="neopixel", touch_kind="none")
    assert not uses_gpio(spi_only)
    assert open_pin_factory(spi_only, dev_dir=tmp_path) is None
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    assert open_pin_factory(HardwareSettings(), dev_dir=tmp_path) is None


def test_the_lamp_off_a_pi_exits_2_with_one_line_and_no_fallback_warnings(tmp_path: Path) -> None:
    """What a buyer sees when the pins cannot work (here: no GPIO chip, or no lgpio on a machine
    that has one): the cause in one line, exit code 2, which the unit does not restart on."""
    settings = tmp_path / "device.env"
    settings.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD=secret\n"
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    for command in ("run", "selftest"):
        result = subprocess.run(
            [sys.executable, "-m", "touchlamp", "device", command, "--env-file", str(settings)],
            capture_output=True,
            text=True,
            env=environment,
            check=False,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("touchlamp: cannot use the GPIO pins: ")
        if not list(Path("/dev").glob("gpiochip*")):
            reason = "there is no GPIO chip (/dev/gpiochip*): this is not a Raspberry Pi"
            assert reason in line
            # `device run` offers the simulator; `selftest` has no --simulate to offer.
            offer = "; to try the lamp without one: touchlamp device run --simulate"
            assert line.endswith(offer) == (command == "run")


def test_systemd_status_names_the_cause_when_the_pins_cannot_work(tmp_path: Path) -> None:
    """`systemctl status touchlamp-device` shows the service's last STATUS= line."""
    settings = tmp_path / "device.env"
    settings.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD=secret\n"
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n"
    )
    with (
        tempfile.TemporaryDirectory(prefix="tl-") as short,  # a Unix socket path is short
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd,
    ):
        notify = Path(short) / "notify"
        systemd.bind(str(notify))
        systemd.settimeout(10)
        environment = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
        result = subprocess.run(
            [sys.executable, "-m", "touchlamp", "device", "run", "--env-file", str(settings)],
            capture_output=True,
            text=True,
            env={**environment, "NOTIFY_SOCKET": str(notify)},
            check=False,
            timeout=60,
        )
        status = systemd.recv(4096).decode()
    assert result.returncode == 2
    reason = result.stderr.strip().removeprefix("touchlamp: ")
    assert status.startswith("STATUS=stopped: cannot use the GPIO pins: ")
    # systemd shows one line of up to 200 characters: the start of the same message.
    shown = status.removeprefix("STATUS=").removesuffix("…")
    assert f"stopped: {reason}".startswith(shown)
