"""Presence and group state: who is online, and what each lamp's retained group topic says."""

from __future__ import annotations

from tests.relay.helpers import add_lamps
from touchlamp.protocol import Availability, GroupMember, GroupState
from touchlamp.server.groupstate import NOT_PAIRED, states_for
from touchlamp.server.presence import Presence
from touchlamp.server.store import Store


def test_coming_online_updates_every_member_of_the_group(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c", group="home")
    add_lamps(store, "lamp-x")
    presence = Presence(store=store)
    assert set(presence.update("lamp-b", Availability.ONLINE)) == {"lamp-a", "lamp-b", "lamp-c"}
    assert presence.update("lamp-b", Availability.ONLINE) == ()  # no change, nothing to tell
    assert presence.update("lamp-x", Availability.ONLINE) == ("lamp-x",)
    assert presence.update("lamp-unknown", Availability.ONLINE) == ()
    assert presence.online_count() == 2


def test_each_member_sees_the_whole_group_with_presence(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    Presence(store=store).update("lamp-b", Availability.ONLINE)
    states = states_for(store, ["lamp-a", "lamp-b"])
    expected = GroupState(
        group="home",
        members=[
            GroupMember(id="lamp-a", name="Lamp-A", color="#ff0000", online=False),
            GroupMember(id="lamp-b", name="Lamp-B", color="#00ff00", online=True),
        ],
    )
    assert states == {"lamp-a": expected, "lamp-b": expected}


def test_unpaired_and_unknown_lamps_are_told_they_are_not_paired(store: Store) -> None:
    add_lamps(store, "lamp-a")
    assert states_for(store, ["lamp-a", "lamp-nobody"]) == {
        "lamp-a": NOT_PAIRED,
        "lamp-nobody": NOT_PAIRED,
    }
    assert GroupState(group=None, members=[]) == NOT_PAIRED
