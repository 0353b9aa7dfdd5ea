"""Errors in the logs of the processes a test started (``touchlamp relay run``, ``touchlamp device
run --simulate``, …): the test process's own guard (tests/conftest.py) cannot see them.

A child logs with ``cli.configure_logging``'s format, ``<date> <time>,<ms> LEVEL logger: message``
(without the stamp under systemd's journal). ``errors_in`` returns the ERROR/CRITICAL records of
``touchlamp`` loggers, and tracebacks nobody logged (an exception that ended a thread or the
process: ``Exception in thread …``, or a ``Traceback`` outside an ERROR record's own lines).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["errors_in", "errors_under"]

_RECORD = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )?"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<logger>[\w.]+): "
)
_SERIOUS = {"ERROR", "CRITICAL"}
_UNCAUGHT = ("Traceback (most recent call last):", "Exception in thread ")


def _ours(logger: str) -> bool:
    return logger == "touchlamp" or logger.startswith(("touchlamp.", "__main__"))


def errors_in(text: str) -> list[str]:
    """The lines of ``text`` (one child's log) that show an error; see the module docstring."""
    found: list[str] = []
    record_level: str | None = None  # the level of the record the current line belongs to
    for line in text.splitlines():
        record = _RECORD.match(line)
        if record is not None:
            record_level = record["level"]
            if record_level in _SERIOUS and _ours(record["logger"]):
                found.append(line)
            continue
        # A traceback right after an ERROR record is that record's (logger.exception): counted.
        if line.startswith(_UNCAUGHT) and record_level not in _SERIOUS:
            found.append(line)
            record_level = "ERROR"  # the rest of this traceback belongs to the line just counted
    return found


def errors_under(directory: Path, allowed: Iterable[re.Pattern[str]] = ()) -> dict[Path, list[str]]:
    """Every ``*.log`` under ``directory`` with the errors it shows that no ``allowed`` pattern
    matches (``re.search``); logs without any are left out."""
    patterns = list(allowed)
    found: dict[Path, list[str]] = {}
    for log in sorted(directory.rglob("*.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue  # removed meanwhile, or not a file
        lines = [line for line in errors_in(text) if not any(p.search(line) for p in patterns)]
        if lines:
            found[log] = lines
    return found
