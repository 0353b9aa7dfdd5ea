"""Whether a lamp runs on simulated pins, as its state directory records it.

``touchlamp sim``, ``demo`` and ``device run --simulate`` mark the lamp's state directory; a
lamp started on a Raspberry Pi's pins removes the mark. ``touchlamp doctor`` reads it, so a
simulated lamp is checked as one: no GPIO chip, pin driver or service to expect.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["MARKER", "is_simulated", "mark_simulated", "unmark_simulated"]

MARKER = "simulated"
"""The file's name inside the lamp's state directory."""


def mark_simulated(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).write_text(
        "This lamp runs on simulated pins (touchlamp sim, demo or device run --simulate).\n",
        encoding="utf-8",
    )


def unmark_simulated(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / MARKER).unlink()


def is_simulated(state_dir: Path) -> bool:
    return (state_dir / MARKER).is_file()
