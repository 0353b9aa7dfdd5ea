"""``touchlamp device enroll`` and ``touchlamp device selftest``: files, pins and messages."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from touchlamp.cli import main
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings, HardwareSettings, LookSettings
from touchlamp.device.hardware import mock_pin_factory
from touchlamp.device.selftest import run_selftest
from touchlamp.protocol import Enrollment, encode_token

PASSWORD = "s3cret-pass-word-0123456789"
TOKEN = encode_token(
    Enrollment(lamp="lamp-a", password=PASSWORD, host="mqtt.example.net", port=8883, tls=True)
)


@pytest.fixture(autouse=True)
def _no_device_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)


def test_enroll_writes_a_private_settings_file_the_lamp_can_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "etc" / "device.env"

    assert main(["device", "enroll", TOKEN, "--env-file", str(env_file)]) == 0

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings(DeviceSettings, env_file=env_file)
    assert settings.lamp_id == "lamp-a"
    assert settings.mqtt.host == "mqtt.example.net"
    assert settings.mqtt.effective_port == 8883
    assert settings.mqtt.tls
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == PASSWORD
    out = capsys.readouterr().out
    assert "Enrolled lamp lamp-a" in out
    assert "mode 0600" in out
    assert PASSWORD not in out


def test_enrolling_again_changes_the_login_and_keeps_the_owners_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "device.env"
    env_file.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=old-lamp\n"
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD=old-password\n"
        "# my wiring\n"
        "TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN=22\n"
        "TOUCHLAMP_DEVICE_COLOR='#3366ff'\n"
    )
    env_file.chmod(0o644)
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    token = encode_token(
        Enrollment(lamp="lamp-b", password=PASSWORD, host="h", port=8883, tls=True, ca=ca)
    )

    assert main(["device", "enroll", token, "--env-file", str(env_file)]) == 0

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings(DeviceSettings, env_file=env_file)
    assert settings.lamp_id == "lamp-b"
    assert settings.hardware.touch_pin == 22
    assert settings.color == "#3366ff"
    assert settings.mqtt.ca_file is not None
    assert settings.mqtt.ca_file.read_text() == ca
    assert "old-password" not in env_file.read_text()
    assert "# my wiring" in env_file.read_text()


@pytest.mark.parametrize(
    ("token", "complaint"),
    [
        ("hello", "must start with 'tl1.'"),
        (TOKEN[: len(TOKEN) // 2], "enrollment token"),
    ],
)
def test_a_bad_token_says_what_is_wrong_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token: str, complaint: str
) -> None:
    env_file = tmp_path / "device.env"

    assert main(["device", "enroll", token, "--env-file", str(env_file)]) == 2

    assert complaint in capsys.readouterr().err
    assert not env_file.exists()


class _Assembler(io.StringIO):
    """The person at the bench: notes what the LED shows at each line the self-test prints, and
    touches the sensor when asked."""

    def __init__(self, pins: Any, hardware: HardwareSettings, *, touches: bool) -> None:
        super().__init__()
        self._pins = pins
        self._hardware = hardware
        self._touches = touches
        self.seen: list[tuple[float, float, float]] = []

    def write(self, text: str) -> int:
        hardware = self._hardware
        red, green, blue = (
            float(self._pins.pin(pin).state)
            for pin in (hardware.red_pin, hardware.green_pin, hardware.blue_pin)
        )
        self.seen.append((red, green, blue))
        written = super().write(text)
        if self._touches and text.startswith("Touch the lamp now"):
            pin = self._pins.pin(hardware.touch_pin)
            pin.drive_high()
            pin.drive_low()
        return written


@pytest.mark.parametrize("touches", [True, False])
def test_selftest_cycles_the_colours_and_waits_for_a_touch(touches: bool) -> None:
    hardware = HardwareSettings()
    pins = mock_pin_factory()
    out = _Assembler(pins, hardware, touches=touches)

    works = run_selftest(
        hardware=hardware,
        looks=LookSettings(),
        out=out,
        touch_timeout=0.0 if not touches else 5.0,
        step_seconds=0.0,
        pin_factory=pins,
    )

    assert works is touches
    # The pins as each line was printed: dark, red, green, blue, white, then dark again.
    assert out.seen[:6] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0, 0, 0)]
    text = out.getvalue()
    if touches:
        assert "touched" in text
        assert "work" in text
    else:
        assert "No touch within" in text
        assert "GPIO17" in text
