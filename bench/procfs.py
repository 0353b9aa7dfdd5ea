"""What a process costs, read from ``/proc/<pid>``: CPU time, resident memory, its peak.

Linux only (so is the relay's deployment target). ``VmHWM`` is the process's peak resident set
since it started, kept by the kernel, so no sample can miss a short spike.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessSample", "cpu_percent", "sample"]

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat: fields after the ")" closing the command name; utime and stime are the
# 14th and 15th fields of the whole line, i.e. indexes 11 and 12 after the name.
_UTIME_AFTER_NAME = 11
_STIME_AFTER_NAME = 12


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One look at a process: CPU seconds used so far, RSS now and its peak, when taken."""

    pid: int
    at: float  # time.monotonic()
    cpu_seconds: float
    rss_bytes: int
    hwm_bytes: int


def sample(pid: int) -> ProcessSample:
    """Read ``/proc/<pid>/stat`` and ``status``; ``ProcessLookupError`` if it has exited."""
    base = Path("/proc") / str(pid)
    try:
        stat = (base / "stat").read_text(encoding="ascii")
        status = (base / "status").read_text(encoding="ascii")
    except FileNotFoundError:
        raise ProcessLookupError(f"process {pid} has exited: there is nothing to measure") from None
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[_UTIME_AFTER_NAME]) + int(fields[_STIME_AFTER_NAME])
    memory = _status_kib(status)
    return ProcessSample(
        pid=pid,
        at=time.monotonic(),
        cpu_seconds=ticks / _TICKS_PER_SECOND,
        rss_bytes=memory.get("VmRSS", 0) * 1024,
        hwm_bytes=memory.get("VmHWM", 0) * 1024,
    )


def cpu_percent(first: ProcessSample, last: ProcessSample) -> float:
    """CPU used between two samples, in percent of one core (200 % = two cores busy)."""
    if first.pid != last.pid:
        raise ValueError(f"samples of two processes ({first.pid}, {last.pid}) cannot be compared")
    wall = last.at - first.at
    if wall <= 0:
        raise ValueError("the second sample must be taken after the first")
    return 100.0 * (last.cpu_seconds - first.cpu_seconds) / wall


def _status_kib(status: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[key] = int(parts[0])
    return values
