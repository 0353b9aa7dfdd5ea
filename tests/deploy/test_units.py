"""The shipped systemd units: ``systemd-analyze`` accepts them and rates them as hardened as
DEPLOY.md promises (relay ≤ 2.0, lamp ≤ 4.0). Skipped, with the reason, without systemd-analyze.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from importlib import resources
from pathlib import Path

import pytest

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package: systemd)"
)
UNITS = ("touchlamp-device.service", "touchlamp-relay.service")
EXPOSURE_LIMITS = {"touchlamp-device.service": 4.0, "touchlamp-relay.service": 2.0}
SHIPPED_COMMAND = "/opt/touchlamp/venv/bin/touchlamp"
# The touchlamp command of the environment running the tests: `verify` insists that ExecStart's
# program exists, and /opt/touchlamp/venv does not on a development machine.
HERE_COMMAND = str(Path(sysconfig.get_path("scripts")) / "touchlamp")
_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def shipped(name: str) -> str:
    return resources.files("touchlamp.systemd").joinpath(name).read_text("utf-8")


def analyze(*args: str, unit_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    env = dict(os.environ)
    if unit_path is not None:
        # The trailing ':' keeps the standard directories (for multi-user.target and friends).
        env["SYSTEMD_UNIT_PATH"] = f"{unit_path}:"
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, env=env, check=False
    )


def runnable_copy(name: str, directory: Path) -> Path:
    """The unit as shipped, except that ExecStart runs this environment's touchlamp."""
    text = shipped(name)
    assert f"ExecStart={SHIPPED_COMMAND} " in text
    path = directory / name
    path.write_text(text.replace(f"ExecStart={SHIPPED_COMMAND} ", f"ExecStart={HERE_COMMAND} "))
    return path


def complaints_about(output: str, *names: str) -> list[str]:
    return [line for line in output.splitlines() if any(name in line for name in names)]


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_accepts_the_unit(name: str, tmp_path: Path) -> None:
    path = runnable_copy(name, tmp_path)
    result = analyze("verify", "--man=no", str(path), unit_path=tmp_path)
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values too, and only warns: those must not appear.
    assert complaints_about(result.stdout + result.stderr, name) == []


@needs_systemd_analyze
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt directive is reported."""
    path = runnable_copy("touchlamp-relay.service", tmp_path)
    path.write_text(path.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = analyze("verify", "--man=no", str(path), unit_path=tmp_path)
    assert complaints_about(result.stdout + result.stderr, "touchlamp-relay.service")


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_exposure_is_within_the_promised_limit(name: str, tmp_path: Path) -> None:
    path = runnable_copy(name, tmp_path)
    result = analyze("security", "--offline=true", "--no-pager", str(path))
    match = _EXPOSURE.search(result.stdout)
    assert match is not None, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert exposure <= EXPOSURE_LIMITS[name], result.stdout


@pytest.mark.parametrize("name", UNITS)
def test_units_start_after_network_and_clock_and_come_back_after_a_crash(name: str) -> None:
    settings = directives(shipped(name))
    assert settings["Type"] == ["notify"]
    assert settings["WatchdogSec"]
    assert settings["Restart"] == ["on-failure"]
    assert set(settings["After"][0].split()) >= {"network-online.target", "time-sync.target"}
    assert settings["Wants"] == ["network-online.target"]
    assert settings["DynamicUser"] == ["yes"]
    assert settings["WantedBy"] == ["multi-user.target"]


def test_the_lamp_reaches_gpio_i2c_and_spi_and_has_a_writable_working_directory() -> None:
    settings = directives(shipped("touchlamp-device.service"))
    assert settings["SupplementaryGroups"] == ["gpio i2c spi"]
    assert settings["StateDirectory"] == ["touchlamp"]
    assert settings["WorkingDirectory"] == ["%S/touchlamp"]
    assert {"char-gpiochip rw", "char-i2c rw", "char-spi rw"} <= set(settings["DeviceAllow"])


@pytest.mark.parametrize("name", UNITS)
def test_a_settings_or_hardware_error_is_not_restarted_in_a_loop(name: str) -> None:
    """The lamp exits 2 on a setting or hardware it cannot use (tests/device/test_gpio.py);
    restarting every 5 s for ever would fix nothing and flood the journal."""
    assert directives(shipped(name))["RestartPreventExitStatus"] == ["2"]


def test_settings_reach_the_service_as_a_credential_it_names_on_its_command_line() -> None:
    for name, role in (
        ("touchlamp-device.service", "device"),
        ("touchlamp-relay.service", "relay"),
    ):
        settings = directives(shipped(name))
        assert settings["LoadCredential"] == [f"{role}.env:/etc/touchlamp/{role}.env"]
        assert settings["ExecStart"][0].endswith(f" {role} run --env-file %d/{role}.env")


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (every section), values in order of appearance."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


# ---- the Mosquitto drop-in ----

MOSQUITTO_UNIT = Path("/lib/systemd/system/mosquitto.service")


def broker_drop_in() -> str:
    return (
        resources.files("touchlamp.systemd")
        .joinpath("mosquitto.service.d")
        .joinpath("touchlamp.conf")
        .read_text("utf-8")
    )


@needs_systemd_analyze
@pytest.mark.skipif(
    not MOSQUITTO_UNIT.is_file(), reason="Debian's mosquitto package is not installed"
)
def test_systemd_analyze_verify_accepts_mosquitto_with_the_drop_in(tmp_path: Path) -> None:
    shutil.copy(MOSQUITTO_UNIT, tmp_path / "mosquitto.service")
    (tmp_path / "mosquitto.service.d").mkdir()
    (tmp_path / "mosquitto.service.d" / "touchlamp.conf").write_text(broker_drop_in())
    result = analyze("verify", "--man=no", str(tmp_path / "mosquitto.service"), unit_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert complaints_about(result.stdout + result.stderr, "touchlamp.conf", "mosquitto") == []


def start_check(etc_mosquitto: Path) -> subprocess.CompletedProcess[str]:
    """The drop-in's ExecStartPre= as systemd would run it, against a copy of /etc/mosquitto."""
    (line,) = [value for key, value in _lines(broker_drop_in()) if key == "ExecStartPre"]
    argv = shlex.split(line.replace("$$", "$"))  # systemd's quoting and its escaped '$'
    argv = [arg.replace("/etc/mosquitto", str(etc_mosquitto)) for arg in argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _lines(text: str) -> list[tuple[str, str]]:
    return [
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if value and not key.startswith(("#", "["))
    ]


@pytest.mark.parametrize(
    "include_line",
    ["include_dir /etc/mosquitto/conf.d", "  include_dir   /etc/mosquitto/conf.d/  # stock"],
)
def test_mosquitto_starts_when_it_includes_touchlamps_config(
    tmp_path: Path, include_line: str
) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "touchlamp.conf").write_text("allow_anonymous false\n")
    include = include_line.replace("/etc/mosquitto", str(tmp_path))
    (tmp_path / "mosquitto.conf").write_text(f"pid_file /run/mosquitto/mosquitto.pid\n{include}\n")
    result = start_check(tmp_path)
    assert result.returncode == 0, result.stderr


def test_mosquitto_refuses_to_start_without_touchlamps_config(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "mosquitto.conf").write_text(f"include_dir {tmp_path}/conf.d\n")
    result = start_check(tmp_path)
    assert result.returncode == 1
    assert "conf.d/touchlamp.conf is missing" in result.stderr


def test_mosquitto_refuses_to_start_when_conf_d_is_not_included(tmp_path: Path) -> None:
    """As on a machine whose mosquitto.conf was edited into an open broker of its own."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "touchlamp.conf").write_text("allow_anonymous false\n")
    (tmp_path / "mosquitto.conf").write_text(
        f"listener 1883 127.0.0.1\nallow_anonymous true\n#include_dir {tmp_path}/conf.d\n"
    )
    result = start_check(tmp_path)
    assert result.returncode == 1
    assert f"does not include {tmp_path}/conf.d" in result.stderr
