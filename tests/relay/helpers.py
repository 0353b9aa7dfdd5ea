"""Small helpers shared by the relay tests: a clock moved by hand, and stores with lamps in them."""

from __future__ import annotations

from touchlamp.server.store import Group, Store

__all__ = ["START", "StepClock", "add_lamps", "group_of"]

START = 1_700_000_000.0  # a fixed wall-clock time (seconds since the epoch) to start tests at


class StepClock:
    """A clock (seconds) that moves only when told; callable like ``time.time``."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards: advance by seconds >= 0")
        self.now += seconds


def add_lamps(store: Store, *lamp_ids: str, group: str | None = None) -> None:
    """Register ``lamp_ids`` (colour derived from the id) and, with ``group``, pair them."""
    palette = ("#ff0000", "#00ff00", "#0000ff", "#ffff00", "#00ffff", "#ff00ff", "#ffffff")
    for index, lamp_id in enumerate(lamp_ids):
        store.add_lamp(
            lamp_id,
            name=lamp_id.title(),
            color=palette[index % len(palette)],
            now_ms=int(START * 1000),
        )
    if group is not None:
        store.create_group(list(lamp_ids), name=group, group_id=f"g-{group}")


def group_of(store: Store, lamp_id: str) -> Group:
    group = store.group_of(lamp_id)
    assert group is not None, f"{lamp_id} is in no group"
    return group
