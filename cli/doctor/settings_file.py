"""The settings file a check starts from: there, private when it holds a secret, naming an
enrolled lamp, and valid."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.relay import RelaySettings
from touchlamp.doctor.findings import Finding, fail

__all__ = ["read_settings"]


def read_settings(
    cls: type[DeviceSettings] | type[RelaySettings], env_file: Path
) -> tuple[list[Finding], Any]:
    variable = "TOUCHLAMP_DEVICE_" if cls is DeviceSettings else "TOUCHLAMP_RELAY_"
    if not env_file.exists():
        role = "device" if cls is DeviceSettings else "relay"
        return [
            fail(
                f"no settings file {env_file}",
                f"install the {role}: sudo touchlamp {role} install (or pass --env-file)",
            )
        ], None
    findings: list[Finding] = []
    mode = env_file.stat().st_mode
    secrets_in_file = _secrets(env_file)
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and secrets_in_file:
        findings.append(
            fail(
                f"{env_file} is readable by others ({stat.S_IMODE(mode):04o}); it holds a "
                f"password ({', '.join(secrets_in_file)})",
                f"sudo chmod 600 {env_file}",
            )
        )
    if cls is DeviceSettings and not _names_lamp(env_file):
        findings.append(
            fail(
                f"the lamp is not enrolled yet ({env_file} has no TOUCHLAMP_DEVICE_LAMP_ID)",
                f"sudo touchlamp device enroll TOKEN --env-file {env_file} with the token from "
                "the relay's operator (`touchlamp relay lamp add`)",
            )
        )
        return findings, None
    try:
        settings = load_settings(cls, env_file=env_file)
    except PermissionError:
        findings.append(fail(f"cannot read {env_file}: permission denied", "run it with sudo"))
        return findings, None
    except SettingsError as error:
        findings.append(
            fail(
                f"settings {env_file}: {error}",
                f"edit the {variable}… line it names in {env_file}",
            )
        )
        return findings, None
    return findings, settings


def _secrets(env_file: Path) -> list[str]:
    """The variables in ``env_file`` that hold a secret themselves: a ``…PASSWORD`` (not a
    ``…PASSWORD_FILE``, which names a file) or a store URL with a password in it."""
    try:
        lines = env_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ["unreadable, so assumed"]
    found = []
    for line in lines:
        name, equals, value = line.strip().removeprefix("export ").partition("=")
        name, value = name.strip().upper(), value.strip().strip("'\"")
        if not equals or name.startswith("#") or not value:
            continue
        if name.endswith("PASSWORD") or (name.endswith("STORE_URL") and "@" in value):
            found.append(name)
    return found


def _names_lamp(env_file: Path) -> bool:
    """Whether a lamp id is set at all (in the file or the environment), so that a lamp that
    was installed but not enrolled is told so rather than shown a validation error."""
    if os.environ.get("TOUCHLAMP_DEVICE_LAMP_ID"):
        return True
    try:
        lines = env_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return True  # let load_settings report what is wrong with the file
    return any(
        line.strip().upper().removeprefix("EXPORT ").startswith("TOUCHLAMP_DEVICE_LAMP_ID=")
        for line in lines
    )
