"""Whether the lamp's state files take writes: said once when one refuses, once when all do again.

The outbox (device/outbox.py) and the seen glows (device/dedup.py) raise ``StateFileError`` on a
full disk or a read-only card. The lamp carries on meanwhile (RELIABILITY.md, scenario 9): this
keeps which files refuse, and turns the first refusal, and the recovery of the last, into one
log line each and a ``StateTrouble`` event for the core (its "trouble" look).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from touchlamp.device.events import Event, StateTrouble
from touchlamp.device.outbox import StateFileError

__all__ = ["StateFileWatch"]

logger = logging.getLogger(__name__)


class StateFileWatch:
    """The state files of lamp ``lamp_id`` that refuse writes now, with why; ``emit`` gets the
    ``StateTrouble`` events. Called from any thread (a touch is sent from the owner's page)."""

    def __init__(self, *, lamp_id: str, emit: Callable[[Event], None]) -> None:
        self._lamp_id = lamp_id
        self._emit = emit
        self._failing: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, name: str, error: StateFileError | None) -> None:
        """Whether the state file ``name`` takes writes (``error`` None: it took one); said once
        (with the fix) when the first one refuses and once when all take them again."""
        with self._lock:
            before = bool(self._failing)
            if error is None:
                if self._failing.pop(name, None) is None:
                    return
            elif name in self._failing:
                return
            else:
                self._failing[name] = str(error)
            after = bool(self._failing)
        if after and not before:
            logger.error(
                "lamp %s: %s. The lamp carries on: touches go out while it is connected and wait "
                "in memory while it is not (lost if it restarts), glows are shown but not "
                "remembered (one may show again after a restart)",
                self._lamp_id,
                error,
            )
            self._emit(StateTrouble(failing=True, error=str(error)))
        elif before and not after:
            logger.warning("lamp %s: its state directory takes writes again", self._lamp_id)
            self._emit(StateTrouble(failing=False))
