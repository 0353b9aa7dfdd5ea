"""What the owner may change on a running lamp, checked, kept and applied at once.

``OwnerSettings`` sits between the lamp's page (and ``touchlamp device set`` through the
control socket) and the running ``LampAgent``:

- ``values()`` — each owner key's value and where it comes from (this lamp's settings file,
  the environment, the env file, or the default);
- ``change({key: value, …})`` — every change is checked against the whole settings first
  (``OwnerSettingError`` names the key, the value and what would be right; nothing is written
  or applied then); then the lamp's settings file is rewritten (config/lamp_file.py) and the
  agent takes the new looks, quiet hours and name at once, without a restart.

The colour is the odd one: it is the lamp's ``color`` file, which a hold on the lamp writes
too; a colour set here goes through the agent as if it had been picked by holding (kept,
announced to the group, shown with the pick's two swells).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

from pydantic import BaseModel, TypeAdapter, ValidationError

from touchlamp.config.device import DeviceSettings
from touchlamp.config.lamp_file import (
    LAMP_FILE,
    OWNER_KEYS,
    LampFileError,
    flatten,
    nest,
    owned_like_its_directory,
    read_lamp_file,
    write_lamp_file,
)
from touchlamp.device.agent import COLOR_FILE, LampAgent, load_color, save_color
from touchlamp.errors import ConfigurationError
from touchlamp.protocol.messages import Color

__all__ = [
    "KEYS",
    "OwnerSettingError",
    "OwnerSettings",
    "OwnerValue",
    "ReconfigurableLamp",
    "answer",
    "answer_offline",
    "checked",
    "describe_answer",
    "describe_running",
    "with_lamp_file",
]

KEYS: Mapping[str, str] = {"color": "your colour, #rrggbb (holding the lamp picks one too)"}
KEYS = {**KEYS, **OWNER_KEYS}
"""Every key the owner may set, with what it means (``device set``'s and the page's keys)."""

_PREFIX = "TOUCHLAMP_DEVICE_"
_COLOR: TypeAdapter[str] = TypeAdapter(Color)


class OwnerSettingError(ConfigurationError, ValueError):
    """A key the owner may not set, or a value it may not take; the message says which and
    what would be right. ``key`` is the key at fault (``None`` for an unknown key)."""

    def __init__(self, message: str, *, key: str | None) -> None:
        super().__init__(message)
        self.key = key


class ReconfigurableLamp(Protocol):
    """What ``OwnerSettings`` needs of the running lamp (``LampAgent``)."""

    @property
    def settings(self) -> DeviceSettings: ...

    @property
    def color(self) -> str: ...

    def reconfigure(self, settings: DeviceSettings) -> None: ...

    def choose_color(self, color: str) -> None: ...


@dataclass(frozen=True, slots=True)
class OwnerValue:
    """One owner key as ``device show`` and the page show it."""

    key: str
    value: Any
    """Its JSON form: a number, a string (``"22:00"``), a bool, or None."""
    source: str
    """Where it comes from, in words (``"this lamp's settings (…/settings.json)"``)."""
    meaning: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "source": self.source,
            "meaning": self.meaning,
        }


class OwnerSettings:
    """The owner's side of a running lamp. ``env_file`` is the file the lamp was started with
    (named as a value's source). Safe to call from any thread: changes are serialised."""

    def __init__(self, *, lamp: ReconfigurableLamp, env_file: Path | None) -> None:
        self._lamp = lamp
        self._env_file = env_file
        self._lock = threading.Lock()
        # The lamp takes a change on its own thread, a moment later: the next change must
        # build on this one, not on what the lamp has taken so far.
        self._settings = lamp.settings

    @property
    def state_dir(self) -> Path:
        return self._settings.state_dir

    @property
    def settings(self) -> DeviceSettings:
        """The settings with every change made so far (the lamp may still be taking one)."""
        return self._settings

    def values(self) -> list[OwnerValue]:
        with self._lock:
            return self._values()

    def change(self, changes: Mapping[str, object]) -> list[OwnerValue]:
        """Apply ``changes`` (all or none) and return the values after them."""
        with self._lock:
            color, others = _split(changes)
            settings = self._settings
            saved = read_lamp_file(self.state_dir)
            updated = checked(settings, others)
            if others:
                flat = flatten(updated.model_dump(mode="json"))
                write_lamp_file(self.state_dir, {**saved, **{key: flat[key] for key in others}})
                self._settings = updated
                self._lamp.reconfigure(updated)
            if color is not None:
                self._lamp.choose_color(color)
            return self._values(settings=updated, color=color)

    def _values(
        self, *, settings: DeviceSettings | None = None, color: str | None = None
    ) -> list[OwnerValue]:
        settings = settings or self._settings
        flat = flatten(settings.model_dump(mode="json"))
        saved = read_lamp_file(self.state_dir)
        file_values = _env_file_names(self._env_file)
        shown = []
        for key, meaning in KEYS.items():
            if key == "color":
                value: Any = color or self._lamp.color
                source = self._color_source()
            else:
                value = flat[key]
                source = self._source(key, saved, file_values)
            shown.append(OwnerValue(key=key, value=value, source=source, meaning=meaning))
        return shown

    def _color_source(self) -> str:
        if load_color(self.state_dir) is not None:
            return f"chosen on the lamp ({self.state_dir / COLOR_FILE})"
        return self._source("color", {}, _env_file_names(self._env_file))

    def _source(self, key: str, saved: Mapping[str, object], file_values: set[str]) -> str:
        if key in saved:
            return f"this lamp's settings ({self.state_dir / LAMP_FILE})"
        variable = _PREFIX + key.replace(".", "__").upper()
        if variable in os.environ:
            return f"the environment ({variable})"
        if variable in file_values and self._env_file is not None:
            return f"the env file ({self._env_file}, {variable})"
        if _given(self._settings, key):
            return "the settings the lamp was started with"
        return "the default"


def with_lamp_file(settings: DeviceSettings) -> DeviceSettings:
    """``settings`` with the lamp's settings file applied (idempotent).

    ``load_settings`` applies it already; settings built earlier in the same process (a
    simulator started again on the same settings) get the file's current values this way.
    """
    saved = read_lamp_file(settings.state_dir)
    if not saved:
        return settings
    try:
        return checked(settings, saved)
    except OwnerSettingError as error:
        raise LampFileError(
            f"the lamp's settings file {settings.state_dir / LAMP_FILE} holds a bad value: "
            f"{error}; fix or delete it"
        ) from None


def checked(settings: DeviceSettings, changes: Mapping[str, object]) -> DeviceSettings:
    """``settings`` with ``changes`` (dotted owner keys), or ``OwnerSettingError``."""
    unknown = [key for key in changes if key not in OWNER_KEYS]
    if unknown:
        raise OwnerSettingError(
            f"{unknown[0]!r} is not a setting the owner may change; the keys are: "
            f"{', '.join(KEYS)}",
            key=None,
        )
    # Each top-level group the changes touch is validated whole (so its own checks run, e.g.
    # quiet hours that start when they end). Not DeviceSettings.model_validate: a settings
    # class validates through its sources, and the lamp's file would win over the change.
    updates: dict[str, object] = {}
    tops = sorted({key.split(".")[0] for key in changes})
    for top in tops:
        prefix = f"{top}."
        current = getattr(settings, top)
        merged = flatten({top: current.model_dump() if isinstance(current, BaseModel) else current})
        merged.update((key, value) for key, value in changes.items() if key.split(".")[0] == top)
        annotation = DeviceSettings.model_fields[top].annotation
        assert annotation is not None  # every owner key's field is annotated
        try:
            updates[top] = TypeAdapter(annotation).validate_python(nest(merged)[top])
        except ValidationError as error:
            issue = error.errors()[0]
            loc = prefix + ".".join(str(part) for part in issue["loc"])
            if loc not in changes:  # the group's own check, or a name's type
                ours = [key for key in changes if key == top or key.startswith(prefix)]
                named = [key for key in ours if key.rsplit(".", 1)[-1] in issue["msg"]]
                loc = (named or ours)[0]
            _refuse(loc, changes[loc], issue["msg"])
    return settings.model_copy(update=updates)


def _refuse(key: str, value: object, why: str) -> NoReturn:
    raise OwnerSettingError(
        f"{key} = {_excerpt(value)} is not accepted: {why}; "
        f"{key} is {KEYS.get(key, 'a setting')} (nothing was changed)",
        key=key,
    ) from None


def _split(changes: Mapping[str, object]) -> tuple[str | None, dict[str, object]]:
    others = {key: value for key, value in changes.items() if key != "color"}
    if "color" not in changes:
        return None, others
    value = changes["color"]
    try:
        color = _COLOR.validate_python(value)
    except ValidationError:
        raise OwnerSettingError(
            f"color = {_excerpt(value)} is not a colour: write #rrggbb, e.g. #ff8c1a "
            "(nothing was changed)",
            key="color",
        ) from None
    return color, others


def _given(settings: BaseModel, key: str) -> bool:
    """Whether ``key`` (dotted) was given when ``settings`` were built, not left to its default."""
    model: object = settings
    for part in key.split("."):
        if not isinstance(model, BaseModel) or part not in model.model_fields_set:
            return False
        model = getattr(model, part)
    return True


def _env_file_names(env_file: Path | None) -> set[str]:
    if env_file is None or not env_file.is_file():
        return set()
    names = set()
    for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
        name, equals, _ = line.strip().partition("=")
        if equals and not name.startswith("#"):
            names.add(name.strip().removeprefix("export ").strip().upper())
    return names


def _excerpt(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the control socket's and the command line's side ---------------------------------------------
def answer(
    owner: OwnerSettings, request: Mapping[str, object], *, lamp: Mapping[str, object]
) -> dict[str, object]:
    """The answer to ``{"owner": "show"}`` or ``{"owner": "set", "changes": {…}}``.

    Raises ``OwnerSettingError`` for a bad key or value, ``ValueError`` for a bad request.
    """
    match request.get("owner"):
        case "show":
            values = owner.values()
        case "set":
            changes = request.get("changes")
            if not isinstance(changes, dict) or not changes:
                raise ValueError('"set" needs "changes": {KEY: VALUE}')
            values = owner.change(changes)
        case other:
            raise ValueError(f"unknown owner request {other!r}: ask for show or set")
    return {"values": [value.to_json() for value in values], "lamp": dict(lamp)}


class _StoppedLamp:
    """A lamp that is not running: its settings and colour as its files have them; a change
    is only written (the lamp takes it when it starts)."""

    def __init__(self, settings: DeviceSettings) -> None:
        self._settings = settings
        self._color = load_color(settings.state_dir) or settings.color

    @property
    def settings(self) -> DeviceSettings:
        return self._settings

    @property
    def color(self) -> str:
        return self._color

    def reconfigure(self, settings: DeviceSettings) -> None:
        self._settings = settings

    def choose_color(self, color: str) -> None:
        save_color(self._settings.state_dir, color)
        owned_like_its_directory(self._settings.state_dir / COLOR_FILE)
        self._color = color


def answer_offline(
    settings: DeviceSettings, *, env_file: Path | None, request: Mapping[str, object]
) -> dict[str, object]:
    """``answer`` for a lamp that is not running (``device show`` / ``set`` without a service)."""
    lamp = _StoppedLamp(settings)
    owner = OwnerSettings(lamp=lamp, env_file=env_file)
    described: dict[str, object] = {
        "id": settings.lamp_id,
        "name": settings.display_name,
        "color": lamp.color,
        "running": False,
    }
    return answer(owner, request, lamp=described)


def describe_answer(data: Mapping[str, object], *, only: set[str] | None = None) -> str:
    """``device show``'s text for an ``answer`` (``only``: just these keys, for ``device set``)."""
    lines: list[str] = []
    lamp = data.get("lamp")
    if isinstance(lamp, Mapping) and only is None:
        lines += _describe_lamp(lamp)
    values = data.get("values")
    if isinstance(values, list):
        shown = [v for v in values if isinstance(v, Mapping) and (only is None or v["key"] in only)]
        if only is None:
            lines.append("Settings (touchlamp device set KEY VALUE):")
        width = max((len(str(v["key"])) for v in shown), default=0)
        for value in shown:
            lines.append(
                f"  {str(value['key']).ljust(width)} = {_shown(value['value'])}"
                f"  (from {value['source']})"
            )
    return "\n".join(lines)


def _describe_lamp(lamp: Mapping[str, object]) -> list[str]:
    lines = [f"Lamp {lamp.get('id')}: {lamp.get('name')}, colour {lamp.get('color')}"]
    if not lamp.get("running", True):
        lines.append("Not running: changes are kept and applied when the lamp starts.")
        return lines
    lines.append("Connected." if lamp.get("online") else "Not connected (run: touchlamp doctor).")
    members = lamp.get("members")
    if isinstance(members, list):
        others = [m for m in members if isinstance(m, Mapping) and m.get("id") != lamp.get("id")]
        if not others:
            lines.append("Not paired: make a code with `touchlamp pair new`, or join one.")
        for member in others:
            state = "online" if member.get("online") else "offline"
            lines.append(
                f"  with {member.get('name')} ({member.get('id')}, {member.get('color')}): {state}"
            )
    return lines


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_running(agent: LampAgent) -> dict[str, object]:
    """A running lamp for ``device show``: name, colour, connected or not, and its group."""
    status = agent.status()
    return {
        "id": status.lamp_id,
        "name": status.name,
        "color": status.color,
        "running": True,
        "online": status.online,
        "members": [
            {"id": m.id, "name": m.name, "color": m.color, "online": m.online}
            for m in status.members
        ],
    }
