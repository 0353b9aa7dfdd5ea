"""Turning an enrollment token into the lamp's settings file (``touchlamp device enroll``).

The token (``touchlamp relay lamp add`` printed it) says who the lamp is, its password and where
the broker is. ``enroll`` writes those as ``TOUCHLAMP_DEVICE_*`` lines into the env file the
service reads, keeping every other line (pins, colour, looks) of an existing file, so enrolling
again with a new token changes only the login. The file holds a password: it is written to a
temporary file created with mode 0600, synced, and renamed over the old one, so it is never
readable by others, not even for a moment, and a power cut leaves the old or the new file.

A private CA from the token goes next to the env file (``<name>-ca.pem``, mode 0644: a
certificate is public) and ``…_MQTT__CA_FILE`` points at it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from touchlamp.errors import TouchlampError
from touchlamp.files import write_atomically
from touchlamp.protocol import Enrollment

__all__ = ["EnrollError", "Enrolled", "default_env_file", "write_enrollment"]

_PREFIX = "TOUCHLAMP_DEVICE_"
# Keys the token decides; any other TOUCHLAMP_DEVICE_MQTT__* line would contradict it.
_ENROLLED_KEYS = ("LAMP_ID", "MQTT__")


class EnrollError(TouchlampError, OSError):
    """The settings file cannot be written; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class Enrolled:
    env_file: Path
    ca_file: Path | None
    replaced: bool  # an existing file was updated


SERVICE_STATE_DIR = Path("/var/lib/touchlamp")
"""The systemd unit's ``StateDirectory=touchlamp``; named in the service's settings file so that
``touchlamp pair`` run by root finds the running service's control socket there."""


def default_env_file() -> Path:
    """``/etc/touchlamp/device.env`` for root (the systemd unit's), else the user's config dir."""
    if os.geteuid() == 0:
        return Path("/etc/touchlamp/device.env")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "touchlamp" / "device.env"


def write_enrollment(
    enrollment: Enrollment, *, env_file: Path, state_dir: Path | None = None
) -> Enrolled:
    """Write ``enrollment`` into ``env_file`` (mode 0600), keeping its unrelated lines.

    ``state_dir`` is written too when the file does not name one yet.
    """
    try:
        env_file.parent.mkdir(parents=True, exist_ok=True)
        existing = env_file.read_text(encoding="utf-8") if env_file.exists() else None
    except (OSError, UnicodeDecodeError) as error:
        raise EnrollError(f"cannot read {env_file} ({error}); pass another --env-file") from error
    ca_file = None
    if enrollment.ca:
        ca_file = env_file.with_name(f"{env_file.stem}-ca.pem")
        _write_or_refuse(ca_file, enrollment.ca.encode("ascii"), mode=0o644)
    kept = [line for line in (existing or "").splitlines() if not _is_enrolled_key(line)]
    values = {
        "LAMP_ID": enrollment.lamp,
        "MQTT__HOST": enrollment.host,
        "MQTT__PORT": str(enrollment.port),
        "MQTT__USERNAME": enrollment.lamp,
        "MQTT__PASSWORD": enrollment.password,
        "MQTT__TOPIC_ROOT": enrollment.root,
        "MQTT__TLS": "true" if enrollment.tls else "false",
    }
    if ca_file is not None:
        values["MQTT__CA_FILE"] = str(ca_file.resolve())
    lines = [
        "# Written by `touchlamp device enroll`: the lamp's identity and broker login.",
        *(f"{_PREFIX}{key}={_quoted(value)}" for key, value in values.items()),
    ]
    if state_dir is not None and not any(_names(line, "STATE_DIR") for line in kept):
        lines.append(f"{_PREFIX}STATE_DIR={_quoted(str(state_dir))}")
    if kept and any(line.strip() for line in kept):
        lines += ["", *kept]
    _write_or_refuse(env_file, ("\n".join(lines) + "\n").encode("utf-8"), mode=0o600)
    return Enrolled(env_file=env_file, ca_file=ca_file, replaced=existing is not None)


def _names(line: str, key: str) -> bool:
    name = line.strip().removeprefix("export ").split("=", 1)[0].strip().upper()
    return name == _PREFIX + key


def _is_enrolled_key(line: str) -> bool:
    stripped = line.strip()
    if stripped.startswith("# Written by `touchlamp device enroll`"):
        return True
    name = stripped.removeprefix("export ").split("=", 1)[0].strip().upper()
    if not name.startswith(_PREFIX):
        return False
    return name[len(_PREFIX) :].startswith(_ENROLLED_KEYS)


def _quoted(value: str) -> str:
    # python-dotenv reads single-quoted values literally: no $ expansion, no escapes.
    if value and all(ch.isalnum() or ch in "-_./:" for ch in value):
        return value
    # pydantic-settings reads env files with python-dotenv, which expands ${VAR} even there.
    if "'" in value or "\n" in value or "${" in value:
        raise EnrollError(
            "a value from the token cannot be written to an env file (it holds a quote, a "
            "newline or '${'); ask the relay's operator for a new token"
        )
    return f"'{value}'"


def _write_or_refuse(path: Path, data: bytes, *, mode: int) -> None:
    """``write_atomically``, its failure told as what to do about it."""
    try:
        write_atomically(path, data, mode=mode)
    except OSError as error:
        raise EnrollError(
            f"cannot write {path} ({error.strerror or error}); run as a user who may, "
            "or pass another --env-file"
        ) from error
