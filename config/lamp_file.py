"""The lamp's own settings file: what its owner chose on the lamp's page or with ``device set``.

The env file stays what the installer and ``device enroll`` wrote (the broker, the pins, the
defaults); the owner's choices live in ``STATE_DIR/settings.json``, one JSON object shaped like
``DeviceSettings`` (``{"looks": {"glow": {"fade_seconds": 600}}}``), and are layered above
every other source (``LampFileSettingsSource``): a value set on the page wins over the
environment, the env file and the defaults, and survives restarts and re-enrolments.

The owner's colour is not in this file: it is the lamp's ``color`` file, which a hold on the
lamp writes too (device/agent.py). Only the keys in ``OWNER_KEYS`` may be in the file: the
looks a person changes, not the broker login or the pins, which a page must never change. A
file with anything else, or that is not JSON, stops start-up with a message naming the file
and the fix (exit 2) instead of being half-applied.

The file is written whole or not at all (write, fsync, rename), readable by the lamp's user only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from touchlamp.config.common import SettingsError
from touchlamp.files import write_atomically

__all__ = [
    "LAMP_FILE",
    "OWNER_KEYS",
    "LampFileError",
    "LampFileSettingsSource",
    "flatten",
    "nest",
    "owned_like_its_directory",
    "read_lamp_file",
    "write_lamp_file",
]

LAMP_FILE = "settings.json"
"""The file's name inside the lamp's state directory."""

OWNER_KEYS: Mapping[str, str] = {
    "name": "the name partners see (1-40 characters)",
    "looks.max_brightness": "the brightest the lamp may shine, 0-1 (scales every light)",
    "looks.glow.attack_seconds": "how long a received touch takes to rise, seconds",
    "looks.glow.breaths": "how many times a received touch breathes before it fades, 0-1000",
    "looks.glow.fade_seconds": "how long a received touch takes to fade, seconds",
    "quiet_hours.enabled": "whether incoming touches stay dark at night, true or false",
    "quiet_hours.start": "when quiet hours begin, HH:MM",
    "quiet_hours.end": "when quiet hours end, HH:MM",
    "looks.ambient_level": "the faint light while a partner is online, 0 (off) to 1",
    "looks.glow_max_age_seconds": "how old a touch may be and still glow, seconds",
}
"""What the owner may change (dotted ``DeviceSettings`` paths), with what each one means."""


class LampFileError(SettingsError):
    """The lamp's settings file cannot be read or holds what it may not; the message says why
    (a ``SettingsError``: the commands exit 2)."""


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"looks": {"glow": {"fade_seconds": 60}}}`` → ``{"looks.glow.fade_seconds": 60}``."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``flatten``."""
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


def read_lamp_file(state_dir: Path) -> dict[str, Any]:
    """The owner's values as dotted keys (``{}`` when the file does not exist)."""
    path = state_dir / LAMP_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise LampFileError(
            f"cannot read the lamp's settings file {path} ({error}); "
            "fix its permissions (the lamp's user must read it) or delete it"
        ) from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise LampFileError(
            f"the lamp's settings file {path} is not JSON ({error}); "
            "delete it to go back to the env file's values"
        ) from None
    if not isinstance(document, dict):
        raise LampFileError(f"the lamp's settings file {path} must hold a JSON object")
    flat = flatten(document)
    unknown = sorted(set(flat) - set(OWNER_KEYS))
    if unknown:
        raise LampFileError(
            f"the lamp's settings file {path} sets {', '.join(unknown)}, which the lamp's page "
            f"does not set (it may set {', '.join(OWNER_KEYS)}); remove those keys, and put "
            "other settings in the env file"
        )
    return flat


def write_lamp_file(state_dir: Path, values: Mapping[str, Any]) -> None:
    """Replace the file with ``values`` (dotted keys from ``OWNER_KEYS``), atomically."""
    unknown = sorted(set(values) - set(OWNER_KEYS))
    if unknown:
        raise LampFileError(f"not owner settings: {', '.join(unknown)}")
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LAMP_FILE
    document = nest(dict(sorted(values.items())))
    write_atomically(path, json.dumps(document, indent=2) + "\n", mode=0o600)
    owned_like_its_directory(path)


def owned_like_its_directory(path: Path) -> None:
    """Give ``path`` the owner of its directory when root wrote it.

    ``sudo touchlamp device set`` with the service stopped writes in the service's state
    directory, which belongs to the service's (dynamic) user: a root-owned 0600 file there
    would be unreadable to the lamp when it starts.
    """
    if os.geteuid() != 0:
        return
    directory = path.parent.stat()
    if directory.st_uid != 0 or directory.st_gid != 0:
        os.chown(path, directory.st_uid, directory.st_gid)


class LampFileSettingsSource(PydanticBaseSettingsSource):
    """``STATE_DIR/settings.json`` as a pydantic-settings source.

    The file lives in the state directory, which is itself a setting: it is found through the
    sources below this one (``below``, highest first), else ``default``.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *,
        below: tuple[PydanticBaseSettingsSource, ...],
        default_state_dir: Path,
    ) -> None:
        super().__init__(settings_cls)
        self._below = below
        self._default = default_state_dir

    def get_field_value(
        self,
        field: FieldInfo,  # noqa: ARG002  the base class's signature
        field_name: str,
    ) -> tuple[Any, str, bool]:
        # Unused: __call__ reads the whole file at once.
        return None, field_name, False

    def state_dir(self) -> Path:
        for source in self._below:
            found = source().get("state_dir")
            if found is not None:
                return Path(found)
        return self._default

    def __call__(self) -> dict[str, Any]:
        return nest(read_lamp_file(self.state_dir()))
