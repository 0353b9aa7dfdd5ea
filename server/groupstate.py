"""What each lamp's retained ``…/group`` topic says: its group's members, names, colours, presence.

Every member gets the same list (itself included, in joining order), so a lamp can show who is
online and find its own entry. A lamp in no group — or unknown to the relay — gets
``{"group": null, "members": []}``, which is how a lamp learns it is "not paired".

``GroupStates`` publishes them, retained, through the relay's edge (after a pairing answer, a
presence change, at start-up, to a lamp that touched while not paired).
"""

from __future__ import annotations

from touchlamp.protocol import GroupMember, GroupState, Topics, encode
from touchlamp.server.inbound import Publish
from touchlamp.server.store.base import Group, Lamp, Store

__all__ = ["NOT_PAIRED", "GroupStates", "group_state", "states_for"]

NOT_PAIRED = GroupState(group=None, members=[])

_NAME_LIMIT = 40  # GroupMember.name / GroupState.group on the wire


def group_state(group: Group | None) -> GroupState:
    if group is None:
        return NOT_PAIRED
    return GroupState(
        group=_name(group.name, fallback=group.id),
        members=[_member(lamp) for lamp in group.members],
    )


def states_for(store: Store, lamp_ids: list[str] | tuple[str, ...]) -> dict[str, GroupState]:
    """The state to retain for each of ``lamp_ids`` (one store read per group, not per lamp)."""
    wanted = set(lamp_ids)
    states: dict[str, GroupState] = {}
    for lamp_id in lamp_ids:
        if lamp_id in states:
            continue
        group = store.group_of(lamp_id)
        state = group_state(group)
        states[lamp_id] = state
        for member in group.members if group is not None else ():
            if member.id in wanted:
                states[member.id] = state
    return states


class GroupStates:
    """Publishes lamps' retained group states (worker thread; reads the store)."""

    def __init__(self, *, store: Store, topics: Topics, publish: Publish) -> None:
        self._store = store
        self._topics = topics
        self._publish = publish

    def publish(self, lamp_ids: list[str]) -> None:
        """Read and publish the state of each of ``lamp_ids``."""
        for lamp_id, state in states_for(self._store, lamp_ids).items():
            self.publish_one(lamp_id, state)

    def publish_one(self, lamp_id: str, state: GroupState) -> None:
        self._publish(self._topics.group(lamp_id), encode(state), retain=True)


def _member(lamp: Lamp) -> GroupMember:
    return GroupMember(
        id=lamp.id, name=_name(lamp.name, fallback=lamp.id), color=lamp.color, online=lamp.online
    )


def _name(name: str, *, fallback: str) -> str:
    return (name.strip() or fallback)[:_NAME_LIMIT]
