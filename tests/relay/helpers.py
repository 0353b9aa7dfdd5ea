"""Small helpers shared by the relay tests: stores with lamps in them."""

from __future__ import annotations

from tests.support.clock import START
from touchlamp.server.store import Group, Store

__all__ = ["add_lamps", "group_of"]


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
