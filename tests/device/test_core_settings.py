"""DeviceSettings: the example file, nested looks from the environment, and readable errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from touchlamp.config import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings

EXAMPLE = Path(__file__).parents[2] / "config" / "device.env.example"
LINE = re.compile(r"^# (?P<example>e\.g\. )?(?P<name>TOUCHLAMP_DEVICE_\w+)=(?P<value>.*)$")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)
    for name in ("CREDENTIALS_DIRECTORY", "TOUCHLAMP_SECRETS_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def _variables(model: type[BaseModel], prefix: str = "TOUCHLAMP_DEVICE_") -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= _variables(kind, f"{prefix}{name.upper()}__")
        else:
            names.add(prefix + name.upper())
    return names


def _example_lines() -> list[re.Match[str]]:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [match for line in lines if (match := LINE.match(line))]


def _load(tmp_path: Path, text: str, **overrides: Any) -> DeviceSettings:
    env_file = tmp_path / "device.env"
    env_file.write_text(text, encoding="utf-8")
    return load_settings(DeviceSettings, env_file=env_file, **overrides)


def test_the_example_file_describes_every_setting() -> None:
    documented = [match["name"] for match in _example_lines()]
    assert sorted(documented) == sorted(_variables(DeviceSettings))


def test_the_example_files_defaults_are_the_real_defaults(tmp_path: Path) -> None:
    defaults = [f"{m['name']}={m['value']}" for m in _example_lines() if not m["example"]]
    loaded = _load(tmp_path, "\n".join(defaults), lamp_id="lamp-a")
    assert loaded == DeviceSettings(lamp_id="lamp-a")


def test_the_example_files_examples_are_valid(tmp_path: Path) -> None:
    (tmp_path / "mqtt-password").write_text("secret\n")
    for match in _example_lines():
        if not match["example"]:
            continue
        value = match["value"]
        if match["name"].endswith("PASSWORD_FILE"):
            value = str(tmp_path / "mqtt-password")
        name = match["name"]
        # A CA file needs TLS in its own group; a home broker password needs its username.
        extra = f"{name.removesuffix('CA_FILE')}TLS=true\n" if name.endswith("CA_FILE") else ""
        if name.startswith("TOUCHLAMP_DEVICE_HOMEASSISTANT__PASSWORD"):
            extra += "TOUCHLAMP_DEVICE_HOMEASSISTANT__USERNAME=touchlamp\n"
        _load(tmp_path, f"TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n{extra}{match['name']}={value}\n")


def test_one_nested_look_from_the_environment_keeps_that_looks_other_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOUCHLAMP_DEVICE_LAMP_ID", "lamp-a")
    monkeypatch.setenv("TOUCHLAMP_DEVICE_LOOKS__TAP_QUEUED__LEVEL", "0.2")
    monkeypatch.setenv("TOUCHLAMP_DEVICE_LOOKS__MISSED__FADE_SECONDS", "600")
    monkeypatch.setenv("TOUCHLAMP_DEVICE_LOOKS__AUTH_FAILED__COLOR", "none")
    looks = load_settings(DeviceSettings).looks
    assert (looks.tap_queued.level, looks.tap_queued.pulses) == (0.2, 2)
    assert (looks.missed.fade_seconds, looks.missed.level) == (600.0, 0.35)
    assert looks.auth_failed.color is None  # "none": the lamp's own colour
    assert looks.auth_failed.period_seconds == 2.0


def test_a_misspelt_nested_setting_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_DEVICE_LAMP_ID", "lamp-a")
    monkeypatch.setenv("TOUCHLAMP_DEVICE_LOOKS__GLOW__FADE_SECOND", "60")
    with pytest.raises(SettingsError) as raised:
        load_settings(DeviceSettings)
    assert (
        "DeviceSettings.looks.glow.fade_second from environment variable "
        "TOUCHLAMP_DEVICE_LOOKS__GLOW__FADE_SECOND: Extra inputs are not permitted"
    ) in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"DeviceSettings\.lamp_id from TOUCHLAMP_DEVICE_LAMP_ID \(not set"),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=Lamp A\n",
            r"DeviceSettings\.lamp_id from env file .* should match pattern .*'Lamp A'",
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_HARDWARE__RED_PIN=17\n",
            (
                r"DeviceSettings\.hardware from the TOUCHLAMP_DEVICE_HARDWARE__… settings: "
                r"Value error, GPIO17 is used twice \(touch_pin and red_pin\): "
                r"give each its own pin"
            ),
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN=40\n",
            r"hardware\.touch_pin from env file .*less than or equal to 27 \(got '40'\)",
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_COLOR=orange\n",
            (
                r"DeviceSettings\.color .*should match pattern '\^#\[0-9a-fA-F\]\{6\}\$' "
                r"\(got 'orange'\)"
            ),
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_QUIET_HOURS__START=25:00\n",
            r"quiet_hours\.start .*valid time format",
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_QUIET_HOURS__TIMEZONE=Mars/Base\n",
            r"unknown time zone 'Mars/Base': use an IANA name",
        ),
        (
            (
                "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_QUIET_HOURS__ENABLED=true\n"
                "TOUCHLAMP_DEVICE_QUIET_HOURS__START=07:00\nTOUCHLAMP_DEVICE_QUIET_HOURS__END=07:00\n"
            ),
            r"start and end are both 07:00: quiet hours need a span",
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_MQTT__CA_FILE=/etc/ca.crt\n",
            r"ca_file is set but tls is off: set tls=true",
        ),
        (
            "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_LOOKS__MAX_BRIGHTNESS=1.5\n",
            r"looks\.max_brightness .*less than or equal to 1",
        ),
    ],
    ids=[
        "no-lamp-id",
        "bad-lamp-id",
        "pin-twice",
        "no-such-pin",
        "colour-name",
        "bad-time",
        "bad-zone",
        "empty-quiet-hours",
        "ca-without-tls",
        "cap-above-one",
    ],
)
def test_bad_settings_read_well(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        _load(tmp_path, text)


def test_the_mqtt_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = _load(
        tmp_path,
        f"TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_MQTT__PASSWORD_FILE={secret}\n",
    )
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(settings)


def test_the_mqtt_password_may_come_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "touchlamp_device_mqtt__password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = _load(tmp_path, "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n")
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-systemd"


def test_derived_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(tmp_path, "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n")
    assert settings.display_name == "lamp-a"
    assert settings.mqtt_username == "lamp-a"
    assert settings.mqtt.effective_port == 1883
    assert settings.state_dir == tmp_path / "state" / "touchlamp"

    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/touchlamp")
    tls = _load(
        tmp_path,
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\nTOUCHLAMP_DEVICE_MQTT__TLS=true\n"
        "TOUCHLAMP_DEVICE_HARDWARE__MPR121_ADDRESS=0x5B\n",
    )
    assert tls.mqtt.effective_port == 8883
    assert tls.state_dir == Path("/var/lib/touchlamp")
    assert tls.hardware.mpr121_address == 0x5B


def test_none_is_a_hardware_kind_in_an_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "device.env"
    env_file.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        "TOUCHLAMP_DEVICE_HARDWARE__TOUCH_KIND=none\n"
        "TOUCHLAMP_DEVICE_HARDWARE__LED_KIND=none\n"
    )
    hardware = load_settings(DeviceSettings, env_file=env_file).hardware
    assert (hardware.touch_kind, hardware.led_kind) == ("none", "none")
