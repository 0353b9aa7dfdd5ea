"""Loading settings so that a bad value stops start-up with one clear message.

``load_settings(DeviceSettings, env_file=...)`` returns the settings or raises ``SettingsError``
whose message names the field, where the bad value came from (environment variable, env file,
secret file or default) and the form that was expected. The CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings
from pydantic_settings.sources import DotEnvSettingsSource

from touchlamp.errors import ConfigurationError

__all__ = ["SettingsError", "load_settings", "read_secret_file"]

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ConfigurationError, ValueError):
    """A setting is missing or has a value of the wrong form; the message says which and why."""


def read_secret_file(path: Path) -> str:
    """The content of a secret file (a password, a DSN) without its trailing newline."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise SettingsError(f"cannot read secret file {path}: {error.strerror}") from error


def load_settings(cls: type[S], *, env_file: Path | None = None, **overrides: Any) -> S:
    """Build ``cls`` from the environment, ``env_file`` and ``overrides`` (highest priority).

    Secrets (passwords, DSNs) may come from files instead of values: a variable named like the
    setting plus ``_FILE`` (``TOUCHLAMP_DEVICE_MQTT__PASSWORD_FILE=/etc/touchlamp/password``), in
    the environment or the env file, is replaced by the file's content. Top-level fields may also
    come from files named after the variable in a secrets directory: ``$CREDENTIALS_DIRECTORY``
    when systemd's ``LoadCredential=`` provides one, else ``$TOUCHLAMP_SECRETS_DIR``.
    Raises ``SettingsError`` naming the field, its source and the expected form.
    """
    if env_file is not None and not env_file.is_file():
        raise SettingsError(
            f"env file {env_file} does not exist; pass an existing file to --env-file"
        )
    secrets_dir = os.environ.get("CREDENTIALS_DIRECTORY") or os.environ.get("TOUCHLAMP_SECRETS_DIR")
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise SettingsError(
            f"secrets directory {secrets_dir} does not exist; "
            "fix CREDENTIALS_DIRECTORY / TOUCHLAMP_SECRETS_DIR"
        )
    from_files = _values_from_files(cls, env_file)
    try:
        return cls(_env_file=env_file, _secrets_dir=secrets_dir, **_merge(from_files, overrides))
    except ValidationError as error:
        raise SettingsError(_describe(cls, error, env_file, overrides)) from None


def _values_from_files(cls: type[BaseSettings], env_file: Path | None) -> dict[str, Any]:
    """``…_FILE`` variables turned into the nested values they stand for."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    variables = {key.upper(): value for key, value in _env_file_values(cls, env_file).items()}
    variables.update((key.upper(), value) for key, value in os.environ.items())
    values: dict[str, Any] = {}
    for name, path in variables.items():
        if not (name.startswith(prefix) and name.endswith("_FILE")) or not path:
            continue
        *parents, leaf = name[len(prefix) : -len("_FILE")].lower().split(delimiter.lower())
        if not _names_secret_field(cls, [*parents, leaf]):
            continue  # a setting that is itself a path (``…_CA_FILE``), or handled by its model
        target = values
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = read_secret_file(Path(path))
    return values


def _names_secret_field(cls: type[BaseModel], parts: list[str]) -> bool:
    """Whether ``parts`` is a field that has no ``…_file`` field of its own beside it."""
    model = cls
    *parents, leaf = parts
    for part in parents:
        field = model.model_fields.get(part)
        group = None if field is None else field.annotation
        if not (isinstance(group, type) and issubclass(group, BaseModel)):
            return False
        model = group
    return leaf in model.model_fields and f"{leaf}_file" not in model.model_fields


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(
    cls: type[BaseSettings],
    error: ValidationError,
    env_file: Path | None,
    overrides: Mapping[str, object],
) -> str:
    lines = []
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    file_values = _env_file_values(cls, env_file)
    for issue in error.errors():
        loc = [str(part) for part in issue["loc"]]
        field = ".".join(loc) or cls.__name__
        variable = (prefix + delimiter.join(loc)).upper()
        source = _source_of(variable, loc, env_file, file_values, overrides)
        value = issue.get("input")
        shown = "" if issue["type"] == "missing" else f" (got {_excerpt(value)})"
        lines.append(f"{cls.__name__}.{field} from {source}: {issue['msg']}{shown}")
    return "invalid settings: " + "; ".join(lines)


def _source_of(
    variable: str,
    loc: list[str],
    env_file: Path | None,
    file_values: Mapping[str, str | None],
    overrides: Mapping[str, object],
) -> str:
    if loc and loc[0] in overrides:
        return f"the command line ({loc[0]})"
    if variable in os.environ:
        return f"environment variable {variable}"
    if variable.lower() in file_values and env_file is not None:
        return f"env file {env_file} ({variable})"
    if f"{variable}_FILE" in os.environ or f"{variable}_FILE".lower() in file_values:
        return f"the file named by {variable}_FILE"
    # A group's own check (e.g. two settings naming the same pin) is reported against the group.
    group = f"{variable}__"
    if any(name.startswith(group) for name in os.environ) or any(
        key.startswith(group.lower()) for key in file_values
    ):
        return f"the {group}… settings"
    return f"{variable} (not set; set the environment variable or put it in the env file)"


def _env_file_values(cls: type[BaseSettings], env_file: Path | None) -> Mapping[str, str | None]:
    if env_file is None:
        return {}
    source = DotEnvSettingsSource(cls, env_file=env_file, case_sensitive=False)
    return {key.lower(): value for key, value in source.env_vars.items()}


def _excerpt(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
