"""Start-up work that must not hold touches back: every lamp's retained availability (sent at
each new subscription) and every lamp's group state to publish again.

At 10,000 lamps this took ~13 ms a lamp before the first touch was forwarded (issue 16); so it
is done in slices of about 5 ms (at least one lamp), between touches, by the
relay's worker (server/relay.py). A lamp's presence is a store write. Worker thread only.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from touchlamp.server.inbound import Inbound

__all__ = ["CatchUp"]

_SLICE_SECONDS = 0.005
_STATES_SLICE = 10  # lamps whose group states are read and published at once


class CatchUp:
    """What is left to catch up on: retained availability (the newest per lamp), then lamps
    whose group state is to be published again."""

    def __init__(self, *, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._presence: dict[str, Inbound] = {}
        self._states: collections.deque[list[str]] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._presence or self._states)

    def defer_presence(self, lamp_id: str, item: Inbound) -> None:
        """Take ``item`` (a retained availability) later; it replaces an older one."""
        self._presence[lamp_id] = item

    def superseded(self, lamp_id: str) -> None:
        """A live availability of ``lamp_id`` arrived: newer than a deferred retained one."""
        self._presence.pop(lamp_id, None)

    def defer_states(self, lamp_ids: list[str]) -> None:
        self._states.extend(
            lamp_ids[start : start + _STATES_SLICE]
            for start in range(0, len(lamp_ids), _STATES_SLICE)
        )

    def run_slice(
        self,
        *,
        presence: Callable[[Inbound], None],
        states: Callable[[list[str]], None],
    ) -> None:
        """One slice: ``presence(item)`` for deferred availability first, then ``states(ids)``."""
        until = self._monotonic() + _SLICE_SECONDS
        while self._presence:
            lamp_id = next(iter(self._presence))
            presence(self._presence.pop(lamp_id))
            if self._monotonic() >= until:
                return
        while self._states:
            states(self._states.popleft())
            if self._monotonic() >= until:
                return
