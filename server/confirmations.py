"""Which forwarded touches' glows the broker may not have saved yet — so a repeat of such a touch
is forwarded again instead of being dropped as a duplicate.

Measured with Mosquitto 2.0.11 (tests/faults, RELIABILITY.md): the broker sends its PUBACK about
a millisecond before it writes the message to disk, and it does not write at all a message it
handed straight to a connected subscriber that has not acknowledged it yet. A broker killed
then forgets the relay's glows (and the touch), although the relay has recorded the touch as
forwarded. The lamp sends the touch again (its outbox keeps it until its own connection has
outlived the PUBACK, device/link.py), and the relay must not drop that repeat.

The relay cannot ask the broker what it saved; it can only see whether the connection its glows
went out on lived on long enough for a dead broker to have been noticed (``window_seconds``, two
keepalives). So a touch is *unconfirmed* from the moment its glows are handed over until its
connection has outlived the window; if the connection ends sooner, the touch is *suspect* until
its repeat comes. A repeat of an unconfirmed-elsewhere or suspect touch is forwarded again;
lamps drop a glow whose touch id they have shown, so nobody sees it twice.

Bounded: at most ``capacity`` touches are tracked each way (the oldest are forgotten first; a
forgotten suspect touch is dropped as a plain duplicate, as before this existed). Pure: the
clock and the current connection's number are injected; one thread (the relay's worker).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

__all__ = ["UnconfirmedGlows"]


class UnconfirmedGlows:
    """See the module docstring. Keys are touch ids (``lamp:stream:seq``)."""

    def __init__(
        self,
        *,
        window_seconds: float,
        clock: Callable[[], float],
        connection: Callable[[], int],
        capacity: int = 50_000,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._window = window_seconds
        self._clock = clock
        self._connection = connection
        self._capacity = capacity
        # touch id → the connection its glows went out on, oldest first.
        self._recent: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._due: collections.deque[tuple[float, int, str]] = collections.deque()
        self._suspect: collections.OrderedDict[str, None] = collections.OrderedDict()

    def forwarded(self, touch: str) -> None:
        """The glows of ``touch`` were just handed to the broker on the current connection."""
        connection = self._connection()
        self._recent[touch] = connection
        self._recent.move_to_end(touch)
        self._due.append((self._clock() + self._window, connection, touch))
        self._suspect.pop(touch, None)
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
        while len(self._due) > self._capacity:
            self._due.popleft()

    def maybe_lost(self, touch: str) -> bool:
        """Whether the broker may have lost the glows of ``touch`` (forward its repeat)."""
        if touch in self._suspect:
            return True
        connection = self._recent.get(touch)
        return connection is not None and connection != self._connection()

    def tick(self) -> None:
        """Settle what has come due: confirmed if its connection lived on, else suspect."""
        now, current = self._clock(), self._connection()
        while self._due and self._due[0][0] <= now:
            _, connection, touch = self._due.popleft()
            if self._recent.get(touch) != connection:
                continue  # forwarded again since; that later entry decides
            del self._recent[touch]
            if connection != current:
                self._suspect[touch] = None
                while len(self._suspect) > self._capacity:
                    self._suspect.popitem(last=False)

    def __len__(self) -> int:
        """How many touches are tracked (unconfirmed or suspect)."""
        return len(self._recent) + len(self._suspect)
