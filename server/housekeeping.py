"""The relay's periodic chores, about once a minute between batches: prune touch records past
de-duplication's retention and pairing codes a day past their expiry, and recount the lamps
online (the gauge is otherwise counted up and down, server/availability.py). Worker thread only;
a store that is unavailable is left alone until the next time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from touchlamp.server.metrics import RelayMetrics
from touchlamp.server.presence import Presence
from touchlamp.server.store.base import Store, StoreUnavailableError

__all__ = ["Housekeeping"]

_HOUSEKEEPING_SECONDS = 60.0
_KEEP_EXPIRED_CODES_MS = 24 * 3600 * 1000


class Housekeeping:
    """``run_if_due()`` does the chores when a minute has passed since the last time (and at
    the first call). ``clock`` is wall time (the store's), ``monotonic`` the schedule's."""

    def __init__(
        self,
        *,
        store: Store,
        presence: Presence,
        metrics: RelayMetrics,
        dedup_retention_hours: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._store = store
        self._presence = presence
        self._metrics = metrics
        self._retention_ms = round(dedup_retention_hours * 3600 * 1000)
        self._clock = clock
        self._monotonic = monotonic
        self._next = monotonic()

    def run_if_due(self) -> None:
        now = self._monotonic()
        if now < self._next:
            return
        self._next = now + _HOUSEKEEPING_SECONDS
        wall_ms = round(self._clock() * 1000)
        with contextlib.suppress(StoreUnavailableError):
            self._store.prune_touches(older_than_ms=wall_ms - self._retention_ms)
            # Expired codes are kept a day, so a late owner hears "expired", not "wrong code".
            self._store.prune_codes(now_ms=wall_ms - _KEEP_EXPIRED_CODES_MS)
            self._metrics.lamps_online.set(self._presence.online_count())
