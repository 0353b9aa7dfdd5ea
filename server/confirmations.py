"""Whether the broker may have lost the glows of a touch the relay recorded — so that a repeat of
that touch is forwarded again instead of being dropped as a duplicate (server/forwarding.py,
rule 5).

Measured with Mosquitto 2.0.11 (tests/faults, RELIABILITY.md): the broker sends its PUBACK before
it writes a message to disk — by default it saves about every 2 s — and it does not write at all
a message it handed straight to a connected subscriber that has not acknowledged it yet. A broker
killed (or a host losing power) then forgets the relay's glows, and the touch, although the
relay has recorded the touch as forwarded. The lamp sends the touch again (its outbox keeps it
until its own connection has outlived the PUBACK, device/touch_delivery.py), and the relay must
not drop that repeat.

The relay cannot ask the broker what it saved; it can only see whether the connection its glows
went out on lived on long enough for a dead broker to have saved them or been noticed
(``window_seconds``, two keepalives: paho notices a silent broker within one and a half). Its
glows leave moments after the store records the touch at ``received_ms``, on the connection of
the moment (or, if that one just ended, the next). So the relay keeps only the times at which
its broker connections *ended*, and counts two more at its start: the start itself (whatever
connection the previous relay process had is gone by then) and the newest ``received_ms`` in the
store (the earliest that connection can have ended: the previous process was alive then; unlike
the start, this depends neither on how long the host was down nor on the new process's clock,
which after a power cut may run behind until NTP sets it). A repeat of a touch is forwarded
again iff an end ``e`` has ``received_ms <= e < received_ms + window``; otherwise it is a plain
duplicate. Nothing is kept per touch: ``received_ms`` is the store's (``record_touches`` returns
it for repeats). A spurious re-forward is harmless: lamps drop a glow whose touch id they have
shown, so nobody sees it twice.

Ends are few (connections are rarely lost): the newest ``capacity`` are kept. Forgetting an end
matters only for a repeat that arrives after that many later ends. The clock is the one of
``received_ms``: the relay's wall clock, epoch seconds, injected. A wall clock stepped back
between a touch and the end of its connection hides that end.

Several relays on one store: a repeat recorded by another relay is judged by this relay's own
ends. What loses glows is the broker dying, which ends every relay's connection, so this relay
has seen that end too; a connection that ended alone costs at worst a harmless extra re-forward.

Pure and single-threaded (the relay's worker).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

__all__ = ["ConnectionEnds"]


class ConnectionEnds:
    """When this relay's broker connections ended, in epoch ms; see the module docstring."""

    def __init__(
        self,
        *,
        window_seconds: float,
        clock: Callable[[], float],
        capacity: int = 1_000,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._window_ms = round(window_seconds * 1000)
        self._clock = clock
        self._capacity = capacity
        self._ends: list[int] = []  # ascending

    def ended(self) -> None:
        """A broker connection ended just now (or the relay started: its predecessor's did)."""
        self.ended_at(round(self._clock() * 1000))

    def ended_at(self, at_ms: int) -> None:
        """A broker connection ended at ``at_ms`` (or was last known to be alive then)."""
        bisect.insort(self._ends, at_ms)
        if len(self._ends) > self._capacity:
            del self._ends[0]  # the oldest: the first to fall out of every touch's window

    def may_have_lost(self, received_ms: int) -> bool:
        """Whether the glows of a touch recorded at ``received_ms`` may be lost: a connection
        ended at or after it, within the window (forward its repeat again)."""
        first = bisect.bisect_left(self._ends, received_ms)
        return first < len(self._ends) and self._ends[first] < received_ms + self._window_ms

    def __len__(self) -> int:
        """How many ends are kept."""
        return len(self._ends)
