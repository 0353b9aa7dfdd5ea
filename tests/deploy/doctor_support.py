"""Small helpers for the doctor tests: settings files and the report's lines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from touchlamp.doctor import Finding

__all__ = ["env_file", "report"]


def env_file(path: Path, lines: dict[str, object], *, mode: int = 0o600) -> Path:
    """A settings file with ``lines`` as ``KEY=value``, readable by its owner only."""
    path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    path.chmod(mode)
    return path


def report(check: Iterable[Finding]) -> list[str]:
    """The lines doctor prints for ``check`` (a finding's fix is on its own indented line)."""
    return [finding.line() for finding in check]
