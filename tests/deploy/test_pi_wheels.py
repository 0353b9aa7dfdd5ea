"""The lamp installs on a Raspberry Pi (Pi 4 or Pi 5, 64-bit Raspberry Pi OS bookworm, Python
3.11) from wheels alone: no compiler, whichever hardware extra it uses.

``pip download --only-binary=:all:`` for aarch64 resolves the lamp's requirements from pyproject
against PyPI as a Pi's pip would, and fails when any of them has no wheel there (the old
NeoPixel driver, rpi_ws281x, has none; lgpio's only wheel is manylinux_2_34). It needs PyPI,
which CI reaches.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Raspberry Pi OS bookworm has glibc 2.36. Older pips do not widen one manylinux tag to the
# older ones it includes, so each is named (manylinux2014 is manylinux_2_17).
PI_PLATFORMS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)),
    "manylinux2014_aarch64",
)


def requirements(*extras: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return wanted


def download_for_a_pi(wanted: list[str], into: Path) -> list[str]:
    """The wheels pip picks for a Pi, by file name; fails with pip's reason otherwise."""
    platforms = [option for tag in PI_PLATFORMS for option in ("--platform", tag)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--dest",
            str(into),
            *wanted,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"not installable from wheels on a Pi:\n{result.stderr}"
    return sorted(path.name for path in into.iterdir())


@pytest.mark.parametrize("extras", [("pi",), ("pi", "neopixel"), ("pi", "mpr121")])
def test_the_lamp_installs_on_a_pi_from_wheels_alone(
    extras: tuple[str, ...], tmp_path: Path
) -> None:
    wheels = download_for_a_pi(requirements(*extras), tmp_path)
    assert all(name.endswith(".whl") for name in wheels), wheels
    # The real lgpio, not the empty placeholder pip takes where no wheel fits.
    (lgpio,) = [name for name in wheels if name.startswith("lgpio-")]
    assert not lgpio.startswith("lgpio-0.0."), lgpio
    if "neopixel" in extras or "mpr121" in extras:
        # Blinka imports gpiod on every Raspberry Pi without declaring it.
        assert any(name.startswith("gpiod-2.") for name in wheels), wheels


def test_the_pi_extra_does_not_settle_for_the_empty_lgpio(tmp_path: Path) -> None:
    """Where no lgpio wheel fits (here: a Python without one), pip must fail rather than take
    lgpio 0.0.0.2, whose module is empty: the extra's lower bound is what stops it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    (pi,) = project["optional-dependencies"]["pi"]
    assert pi.startswith("lgpio>=0.2")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_31_aarch64",  # Debian 11's glibc: older than lgpio's only wheel
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--no-deps",
            "--dest",
            str(tmp_path),
            pi,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode != 0
    assert not list(tmp_path.glob("lgpio-0.0.*"))
