"""The one fake clock of the tests: time that moves when a test says so.

Callable like ``time.time`` (seconds since the epoch), which is what the relay's parts, the
outbox and the pairing windows take; and, with ``monotonic()``/``local_now()``, the lamp's
``touchlamp.device.clock.Clock``. Two ways to make one:

- ``FakeClock(start)`` stands still at ``start`` until ``advance`` (or an assignment to ``now``,
  which may go backwards: a wall clock stepped back by NTP);
- ``FakeClock.shifted(offset)`` follows the system's clocks with the wall clock moved by
  ``offset`` seconds (a lamp set wrong, a relay an hour ahead after ``advance(3600)``), for tests
  in which real threads must also see time pass.
"""

from __future__ import annotations

import datetime as dt
import time

__all__ = ["START", "FakeClock"]

START = 1_700_000_000.0
"""A fixed wall-clock time (seconds since the epoch) that hand-moved clocks start at."""


class FakeClock:
    """See the module docstring."""

    def __init__(self, start: float = START) -> None:
        self._base = start
        self._offset = 0.0
        self._advanced = 0.0
        self._follows_system = False

    @classmethod
    def shifted(cls, offset: float = 0.0) -> FakeClock:
        """The system's clocks, with the wall clock moved by ``offset`` seconds."""
        clock = cls(0.0)
        clock._follows_system = True
        clock._offset = offset
        return clock

    @property
    def now(self) -> float:
        base = time.time() if self._follows_system else self._base
        return base + self._offset

    @now.setter
    def now(self, value: float) -> None:
        self._offset += value - self.now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards: advance by seconds >= 0")
        self._offset += seconds
        self._advanced += seconds

    def monotonic(self) -> float:
        """Moved only by ``advance``: a monotonic clock does not jump with the wall clock."""
        if self._follows_system:
            return time.monotonic() + self._advanced
        return self._advanced

    def local_now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now, dt.UTC)
