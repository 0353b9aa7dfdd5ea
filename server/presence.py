"""Presence: a lamp's retained availability → the store → whose group state to re-publish.

Lamps publish ``online`` (retained) when they connect and the broker publishes their last will,
``offline``, when they vanish. The relay records it and, when it changed, re-publishes the
retained group state of every member of that lamp's group (each shows who is online). A lamp
unknown to the store changes nothing.
"""

from __future__ import annotations

from touchlamp.protocol import Availability
from touchlamp.server.store.base import Store

__all__ = ["Presence"]


class Presence:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    def update(self, lamp_id: str, availability: Availability) -> tuple[str, ...]:
        """Record ``availability``; return the lamps whose group state is now out of date."""
        online = availability is Availability.ONLINE
        if not self._store.set_online(lamp_id, online=online):
            return ()
        group = self._store.group_of(lamp_id)
        if group is None:
            return (lamp_id,)
        return tuple(member.id for member in group.members)

    def online_count(self) -> int:
        return sum(1 for lamp in self._store.list_lamps() if lamp.online)
