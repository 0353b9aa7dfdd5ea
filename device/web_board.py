"""What the page shows of the lamps behind it, and what it asks of them: ``Board``.

A ``Board`` is the lamps a page serves (the simulator's, device/sim.py; a real lamp's own,
device/lamp_board.py): each seen as a ``LampView`` (its pins' values and how to read them), told
of every change through ``Watchers``, touched and let go by the page, and its owner's API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from touchlamp.device.owner_page import OwnerLamp
from touchlamp.errors import TouchlampError

__all__ = ["Board", "LampView", "TouchRefusedError", "UnknownLampError", "Watchers"]


class UnknownLampError(TouchlampError, KeyError):
    """No lamp with that id on this board."""


class TouchRefusedError(TouchlampError):
    """The board does not take touches from the page (a real lamp is touched by hand)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LampView:
    """One lamp as the page shows it: its pins' values right now and how to read them."""

    id: str
    name: str
    online: bool
    led: tuple[float, float, float]
    color: str
    gamma: float
    revision: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "online": self.online,
            "led": [round(value, 6) for value in self.led],
            "color": self.color,
            "gamma": self.gamma,
            "revision": self.revision,
        }


class Board(Protocol):
    """The lamps behind the page (the simulator implements it)."""

    def views(self) -> list[LampView]:
        """Every lamp, in a stable order."""
        ...

    def press(self, lamp_id: str) -> None:
        """Touch ``lamp_id``; ``UnknownLampError`` if there is no such lamp."""
        ...

    def release(self, lamp_id: str) -> None:
        """Let go of ``lamp_id``; ``UnknownLampError`` if there is no such lamp."""
        ...

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from any thread) after a lamp changes; returns the unsubscriber."""
        ...

    def owner(self, lamp_id: str) -> OwnerLamp:
        """``lamp_id``'s owner API; ``UnknownLampError`` if there is no such lamp."""
        ...

    @property
    def home(self) -> str | None:
        """Where ``/`` sends the browser (a real lamp's own page), or None for the lamps' page."""
        ...


class Watchers:
    """The callbacks of ``Board.watch``: added and removed from any thread, called from any."""

    def __init__(self) -> None:
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            key = self._next
            self._next += 1
            self._callbacks[key] = callback

        def unwatch() -> None:
            with self._lock:
                self._callbacks.pop(key, None)

        return unwatch

    def notify(self) -> None:
        with self._lock:
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            callback()
