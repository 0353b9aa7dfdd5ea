"""The lamp's two clocks, behind one small protocol so tests can move time by hand.

``monotonic()`` drives animations and timers: it never jumps, even when a Raspberry Pi without a
real-time clock learns the date from NTP minutes after boot. ``local_now()`` is the wall clock as
an aware local datetime: quiet hours are judged with it, and a glow's ``at`` (epoch ms) is
compared with ``local_now().timestamp()`` to drop stale glows.

``SystemClock`` is the real thing; ``ManualClock`` moves only when told (tests, replays).
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "epoch_ms"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes backwards."""
        ...

    def local_now(self) -> dt.datetime:
        """The wall clock as an aware datetime in the lamp's time zone."""
        ...


def epoch_ms(moment: dt.datetime) -> int:
    """Milliseconds since the Unix epoch, the wire's time unit."""
    return int(moment.timestamp() * 1000)


class SystemClock:
    """``time.monotonic`` and the system's wall clock in ``timezone`` (an IANA name).

    Without a time zone the system's current UTC offset is used; that offset is read afresh on
    every call, so a daylight-saving change is picked up as soon as it happens.
    """

    def __init__(self, *, timezone: str | None = None) -> None:
        self._zone = zoneinfo.ZoneInfo(timezone) if timezone else None

    def monotonic(self) -> float:
        return time.monotonic()

    def local_now(self) -> dt.datetime:
        if self._zone is None:
            return dt.datetime.now().astimezone()
        return dt.datetime.now(self._zone)


class ManualClock:
    """A clock that stands still until ``advance`` moves both of its faces together."""

    def __init__(self, *, start: dt.datetime, monotonic_start: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError(
                "ManualClock needs an aware start, e.g. datetime(…, tzinfo=ZoneInfo(…))"
            )
        self._start = start
        self._monotonic_start = monotonic_start
        self._elapsed = 0.0

    def monotonic(self) -> float:
        return self._monotonic_start + self._elapsed

    def local_now(self) -> dt.datetime:
        # Through UTC, so adding seconds across a daylight-saving change stays exact.
        moment = self._start.astimezone(dt.UTC) + dt.timedelta(seconds=self._elapsed)
        return moment.astimezone(self._start.tzinfo)

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new ``monotonic()``."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards: advance by seconds >= 0")
        self._elapsed += seconds
        return self.monotonic()

    def advance_to(self, monotonic: float) -> float:
        """Move time forward until ``monotonic()`` is ``monotonic``."""
        return self.advance(monotonic - self.monotonic())
