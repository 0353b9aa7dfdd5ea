"""Which touchlamp an install puts in the venv (a wheel or a source folder, and its version),
and which one the venv already has."""

from __future__ import annotations

import json
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from touchlamp.install.layout import InstallError

__all__ = ["default_source", "installed_version", "source_version"]

_DISTRIBUTION = "touchlamp"


def default_source() -> Path:
    """The folder (or wheel) the running touchlamp was installed from, as pip recorded it."""
    # Several may be found (a source folder's touchlamp.egg-info when run from it); only an
    # installed one records where it came from.
    for distribution in metadata.distributions(name=_DISTRIBUTION):
        recorded = distribution.read_text("direct_url.json")
        if not recorded:
            continue
        url = urlparse(json.loads(recorded).get("url", ""))
        if url.scheme == "file" and Path(unquote(url.path)).exists():
            return Path(unquote(url.path))
    raise InstallError(
        "cannot tell where this touchlamp was installed from: pass --from with a wheel "
        "(touchlamp-*.whl) or a clone of the touchlamp repository"
    )


def source_version(source: Path) -> str:
    """The version a wheel's file name or a source folder's pyproject.toml declares."""
    if source.is_file() and source.suffix == ".whl":
        name, version, *_ = source.name.split("-")
        if name != _DISTRIBUTION:
            raise InstallError(f"{source} is a wheel of {name!r}, not of touchlamp")
        return version
    pyproject = source / "pyproject.toml"
    if source.is_dir() and pyproject.is_file():
        project: dict[str, Any] = tomllib.loads(pyproject.read_text("utf-8")).get("project", {})
        if project.get("name") != _DISTRIBUTION:
            raise InstallError(
                f"{source} is not a touchlamp source folder (see its pyproject.toml)"
            )
        return str(project["version"])
    raise InstallError(
        f"--from {source}: expected a touchlamp wheel (touchlamp-*.whl) or a folder with the "
        "project's pyproject.toml"
    )


def installed_version(venv: Path) -> str | None:
    """The touchlamp version installed in ``venv``, read from its metadata (not by running it)."""
    for info in sorted(venv.glob(f"lib/python3*/site-packages/{_DISTRIBUTION}-*.dist-info")):
        for line in (info / "METADATA").read_text("utf-8").splitlines():
            if line.startswith("Version:"):
                return line.partition(":")[2].strip()
    return None
