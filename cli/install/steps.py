"""The changes an install or uninstall makes, each one a step that says itself in one line and
then makes itself; ``carry_out`` runs a plan's steps (or only prints them, for ``--dry-run``)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from touchlamp.files import write_atomically
from touchlamp.install.layout import InstallError

__all__ = [
    "CreateVenv",
    "MakeDir",
    "Note",
    "PipInstall",
    "Remove",
    "RemoveDirIfEmpty",
    "Run",
    "SetMode",
    "Step",
    "Symlink",
    "WriteFile",
    "carry_out",
]


class Step(Protocol):
    """One change: ``describe()`` says it in one line, ``apply()`` makes it."""

    def describe(self) -> str: ...

    def apply(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class MakeDir:
    path: Path
    mode: int

    def describe(self) -> str:
        return f"create directory {self.path} ({self.mode:04o})"

    def apply(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(self.mode)


@dataclass(frozen=True, kw_only=True)
class SetMode:
    path: Path
    mode: int
    was: int

    def describe(self) -> str:
        return f"change mode of {self.path} from {self.was:04o} to {self.mode:04o}"

    def apply(self) -> None:
        self.path.chmod(self.mode)


@dataclass(frozen=True, kw_only=True)
class WriteFile:
    path: Path
    content: str
    mode: int
    replaces: bool

    def describe(self) -> str:
        verb = "update" if self.replaces else "write"
        return f"{verb} {self.path} ({self.mode:04o})"

    def apply(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A power cut leaves the old file or the new one; a secret is never world-readable.
        write_atomically(self.path, self.content, mode=self.mode)


@dataclass(frozen=True, kw_only=True)
class Symlink:
    path: Path
    target: str

    def describe(self) -> str:
        return f"link {self.path} -> {self.target}"

    def apply(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.symlink_to(self.target)


@dataclass(frozen=True, kw_only=True)
class Run:
    argv: tuple[str, ...]

    def describe(self) -> str:
        return "run " + " ".join(self.argv)

    def apply(self) -> None:
        try:
            subprocess.run(self.argv, check=True)  # noqa: S603  fixed argument lists built here
        except FileNotFoundError:
            raise InstallError(f"{self.argv[0]} not found; is it installed?") from None
        except subprocess.CalledProcessError as error:
            raise InstallError(
                f"`{' '.join(self.argv)}` failed with exit code {error.returncode}; "
                "its output above says why"
            ) from None


@dataclass(frozen=True, kw_only=True)
class CreateVenv:
    path: Path
    python: Path
    system_site_packages: bool

    def describe(self) -> str:
        sees = "with" if self.system_site_packages else "without"
        return f"create virtual environment {self.path} ({self.python}, {sees} system packages)"

    def apply(self) -> None:
        argv = [str(self.python), "-m", "venv"]
        if self.system_site_packages:
            argv.append("--system-site-packages")
        Run(argv=(*argv, str(self.path))).apply()


@dataclass(frozen=True, kw_only=True)
class PipInstall:
    venv: Path
    source: Path
    options: tuple[str, ...]
    force: bool
    extras: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        """The source, with its extras as pip reads them (``./touchlamp[pi]``)."""
        return f"{self.source}[{','.join(self.extras)}]" if self.extras else str(self.source)

    def describe(self) -> str:
        return f"pip install {self.requirement} into {self.venv}" + (
            " (reinstall)" if self.force else ""
        )

    def apply(self) -> None:
        argv = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        argv += ["--disable-pip-version-check", *self.options]
        if self.force:
            argv += ["--force-reinstall", "--no-deps"]
        Run(argv=(*argv, self.requirement)).apply()


@dataclass(frozen=True, kw_only=True)
class Note:
    """A step that cannot be taken here, said so in the plan (applying it does nothing)."""

    text: str

    def describe(self) -> str:
        return self.text

    def apply(self) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class Remove:
    path: Path

    def describe(self) -> str:
        return f"remove {self.path}"

    def apply(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        else:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True, kw_only=True)
class RemoveDirIfEmpty:
    """Judged when applied: earlier steps of the same plan may have emptied it."""

    path: Path

    def describe(self) -> str:
        return f"remove directory {self.path} if nothing else is in it"

    def apply(self) -> None:
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


def carry_out(steps: Sequence[Step], *, dry_run: bool, out: TextIO) -> None:
    """Print each step, and apply it unless ``dry_run``."""
    for step in steps:
        print(("would " if dry_run else "") + step.describe(), file=out)
        if not dry_run:
            step.apply()
