"""The relay's store: one suite, run on SQLite and on PostgreSQL (see ``store_backends``)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.relay.store_backends import Backend, fresh_backend
from touchlamp.server.store import (
    SCHEMA_VERSION,
    CodeExistsError,
    GroupExistsError,
    GroupFullError,
    Lamp,
    LampExistsError,
    PairingCode,
    SchemaTooNewError,
    SqliteStore,
    Store,
    StoreError,
    StoreUnavailableError,
    TouchKey,
    UnknownGroupError,
    UnknownLampError,
    open_store,
)
from touchlamp.server.store.schema import MIGRATIONS
from touchlamp.server.store.sql import SqlStore

MINUTE_MS = 60_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with fresh_backend(request.param, tmp_path) as fresh:
        yield fresh


@pytest.fixture
def open_another(backend: Backend) -> Iterator[Callable[[], Store]]:
    """Open more stores on the same database (another relay, or the same one after a restart)."""
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(backend.open())
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_another: Callable[[], Store]) -> Store:
    return open_another()


def add(store: Store, *lamp_ids: str) -> None:
    for lamp_id in lamp_ids:
        store.add_lamp(lamp_id, name=lamp_id.title(), color="#ff8800", now_ms=1_000)


def lamp(store: Store, lamp_id: str) -> Lamp:
    found = store.get_lamp(lamp_id)
    assert found is not None, f"lamp {lamp_id} is gone"
    return found


def member_ids(store: Store, group_id: str) -> list[str]:
    group = store.get_group(group_id)
    assert group is not None, f"group {group_id} is gone"
    return [member.id for member in group.members]


def code(text: str, *, group_id: str, created_by: str, expires_ms: int) -> PairingCode:
    return PairingCode(code=text, group_id=group_id, created_by=created_by, expires_ms=expires_ms)


# -- lamps -----------------------------------------------------------------------------------------
def test_a_registered_lamp_is_found_and_listed(store: Store) -> None:
    lamp = store.add_lamp("lamp-b", name="Kitchen", color="#00ff00", now_ms=1_234)
    store.add_lamp("lamp-a", name="Hall", color="#0000ff", now_ms=1_500)

    assert store.get_lamp("lamp-b") == lamp
    assert (lamp.name, lamp.color, lamp.group_id) == ("Kitchen", "#00ff00", None)
    assert lamp.online is False
    assert (lamp.last_touch_ms, lamp.added_ms) == (None, 1_234)
    assert [each.id for each in store.list_lamps()] == ["lamp-a", "lamp-b"]
    assert store.get_lamp("lamp-z") is None


def test_registering_a_lamp_twice_names_it_and_the_fix(store: Store) -> None:
    add(store, "lamp-a")
    with pytest.raises(LampExistsError) as error:
        store.add_lamp("lamp-a", name="Again", color="#000000", now_ms=2_000)
    assert str(error.value) == (
        "lamp 'lamp-a' is already registered; choose another id, or remove it first with "
        "`touchlamp relay lamp remove lamp-a`"
    )
    assert lamp(store, "lamp-a").name == "Lamp-A"


def test_an_unknown_lamp_is_named_with_the_fix(store: Store) -> None:
    with pytest.raises(UnknownLampError) as error:
        store.remove_lamp("ghost")
    # A KeyError, yet the message reads as written (KeyError would quote it).
    assert str(error.value) == (
        "lamp 'ghost' is not registered; add it with `touchlamp relay lamp add ghost`"
    )
    with pytest.raises(UnknownLampError, match="ghost"):
        store.set_profile("ghost", color="#ffffff")
    with pytest.raises(UnknownLampError, match="ghost"):
        store.leave_group("ghost")


def test_set_profile_changes_only_what_is_given(store: Store) -> None:
    add(store, "lamp-a")
    assert store.set_profile("lamp-a", color="#123456").color == "#123456"
    renamed = store.set_profile("lamp-a", name="Desk")
    assert (renamed.name, renamed.color) == ("Desk", "#123456")
    assert store.get_lamp("lamp-a") == renamed


def test_set_online_says_whether_presence_changed(store: Store) -> None:
    add(store, "lamp-a")
    assert store.set_online("lamp-a", online=True) is True
    assert store.set_online("lamp-a", online=True) is False
    assert lamp(store, "lamp-a").online is True
    assert store.set_online("lamp-a", online=False) is True
    assert lamp(store, "lamp-a").online is False
    assert store.set_online("ghost", online=True) is False


# -- groups ----------------------------------------------------------------------------------------
def test_create_group_keeps_the_given_order(store: Store) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c")
    group = store.create_group(["lamp-c", "lamp-a", "lamp-c"], name="Family", group_id="g-1")

    assert (group.id, group.name) == ("g-1", "Family")
    assert [member.id for member in group.members] == ["lamp-c", "lamp-a"]
    assert all(member.group_id == "g-1" for member in group.members)
    assert store.group_of("lamp-a") == group
    assert store.group_of("lamp-b") is None
    assert store.group_of("ghost") is None


def test_create_group_moves_lamps_and_deletes_groups_left_empty(store: Store) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c", "lamp-d")
    store.create_group(["lamp-a", "lamp-b"], name="Old", group_id="g-old")
    store.create_group(["lamp-c", "lamp-d"], name="Kept", group_id="g-kept")

    store.create_group(["lamp-a", "lamp-b", "lamp-c"], name="New", group_id="g-new")

    assert store.get_group("g-old") is None
    assert member_ids(store, "g-kept") == ["lamp-d"]
    assert member_ids(store, "g-new") == ["lamp-a", "lamp-b", "lamp-c"]
    assert [group.id for group in store.list_groups()] == ["g-kept", "g-new"]


def test_create_group_refuses_a_taken_id_and_no_lamps(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    store.create_group(["lamp-a"], name="First", group_id="g-1")
    with pytest.raises(GroupExistsError, match="'g-1' is taken"):
        store.create_group(["lamp-b"], name="Second", group_id="g-1")
    assert member_ids(store, "g-1") == ["lamp-a"]
    assert store.group_of("lamp-b") is None
    with pytest.raises(StoreError, match="at least one lamp"):
        store.create_group([], name="Nobody", group_id="g-2")


def test_a_pairing_interrupted_half_way_changes_nothing(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    store.create_group(["lamp-a"], name="Alone", group_id="g-alone")
    store.save_code(code("ABC123", group_id="g-alone", created_by="lamp-a", expires_ms=MINUTE_MS))

    # lamp-a is moved (and its old group deleted) before the unknown lamp is met.
    with pytest.raises(UnknownLampError, match="'ghost' is not registered"):
        store.create_group(["lamp-a", "lamp-b", "ghost"], name="New", group_id="g-new")

    assert store.get_group("g-new") is None
    assert member_ids(store, "g-alone") == ["lamp-a"]
    assert store.group_of("lamp-b") is None
    assert store.get_code("ABC123") is not None


def test_join_group_adds_the_newest_member_last(store: Store) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c")
    store.create_group(["lamp-b"], name="G", group_id="g-1")
    store.join_group("lamp-a", "g-1", max_size=8)
    group = store.join_group("lamp-c", "g-1", max_size=8)
    assert [member.id for member in group.members] == ["lamp-b", "lamp-a", "lamp-c"]
    assert store.join_group("lamp-a", "g-1", max_size=3) == group  # already in: unchanged


def test_joining_leaves_the_old_group(store: Store) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c")
    store.create_group(["lamp-a"], name="Mine", group_id="g-mine")
    store.create_group(["lamp-b", "lamp-c"], name="Theirs", group_id="g-theirs")

    store.join_group("lamp-c", "g-mine", max_size=8)
    store.join_group("lamp-b", "g-mine", max_size=8)

    assert member_ids(store, "g-mine") == ["lamp-a", "lamp-c", "lamp-b"]
    assert store.get_group("g-theirs") is None


def test_a_full_group_refuses_and_the_lamp_stays_where_it_was(store: Store) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c")
    store.create_group(["lamp-a", "lamp-b"], name="Pair", group_id="g-pair")
    store.create_group(["lamp-c"], name="Solo", group_id="g-solo")

    with pytest.raises(GroupFullError) as error:
        store.join_group("lamp-c", "g-pair", max_size=2)

    assert str(error.value) == (
        "group 'g-pair' is full (2 of 2 lamps); a member must leave before 'lamp-c' can join"
    )
    assert member_ids(store, "g-pair") == ["lamp-a", "lamp-b"]
    assert member_ids(store, "g-solo") == ["lamp-c"]


def test_joining_an_unknown_group_or_with_an_unknown_lamp_is_refused(store: Store) -> None:
    add(store, "lamp-a")
    store.create_group(["lamp-a"], name="G", group_id="g-1")
    with pytest.raises(UnknownGroupError) as error:
        store.join_group("lamp-a", "g-gone", max_size=8)
    assert str(error.value).startswith("group 'g-gone' does not exist")
    assert member_ids(store, "g-1") == ["lamp-a"]
    with pytest.raises(UnknownLampError, match="ghost"):
        store.join_group("ghost", "g-1", max_size=8)


def test_leaving_keeps_a_group_of_one_and_deletes_an_empty_one(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    store.create_group(["lamp-a", "lamp-b"], name="Pair", group_id="g-1")

    left = store.leave_group("lamp-b")
    assert left is not None
    assert [member.id for member in left.members] == ["lamp-a"]
    assert store.group_of("lamp-b") is None
    assert store.leave_group("lamp-b") is None  # in no group

    assert store.leave_group("lamp-a") is None  # the last one out: the group is deleted
    assert store.get_group("g-1") is None
    assert store.list_groups() == []


# -- touches ---------------------------------------------------------------------------------------
def test_record_touch_tells_new_from_repeated(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    assert store.record_touch("lamp-a", 7, 1, now_ms=5_000) is True
    assert store.record_touch("lamp-a", 7, 1, now_ms=6_000) is False  # redelivered
    assert lamp(store, "lamp-a").last_touch_ms == 5_000
    # The counter was reset (a new stream), or another lamp: the same seq is new again.
    assert store.record_touch("lamp-a", 8, 1, now_ms=7_000) is True
    assert store.record_touch("lamp-b", 7, 1, now_ms=7_000) is True
    # A relay whose clock is behind does not move last_touch_ms back.
    assert store.record_touch("lamp-a", 8, 2, now_ms=6_500) is True
    assert lamp(store, "lamp-a").last_touch_ms == 7_000
    with pytest.raises(UnknownLampError, match="ghost"):
        store.record_touch("ghost", 7, 1, now_ms=7_000)


def test_touch_records_survive_a_restart(store: Store, open_another: Callable[[], Store]) -> None:
    add(store, "lamp-a")
    store.record_touch("lamp-a", 7, 1, now_ms=5_000)
    store.close()

    restarted = open_another()
    assert restarted.record_touch("lamp-a", 7, 1, now_ms=9_000) is False
    assert restarted.record_touch("lamp-a", 7, 2, now_ms=9_000) is True


_RECORD_AND_WAIT = """
import sys
from touchlamp.server.store import open_store
store = open_store(sys.argv[1])
store.record_touch("lamp-a", 7, 1, now_ms=5_000)
print("recorded", flush=True)
sys.stdin.read()  # until killed
"""


def test_a_touch_record_survives_the_relay_process_being_killed(
    backend: Backend, store: Store
) -> None:
    add(store, "lamp-a")
    relay = subprocess.Popen(
        [sys.executable, "-c", _RECORD_AND_WAIT, backend.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline() == "recorded\n"
    finally:
        relay.send_signal(signal.SIGKILL)  # no close, no clean shutdown
        relay.communicate()
    assert store.record_touch("lamp-a", 7, 1, now_ms=9_000) is False


def test_prune_touches_forgets_only_old_records(store: Store) -> None:
    add(store, "lamp-a")
    for seq, at in enumerate([1_000, 2_000, 3_000]):
        store.record_touch("lamp-a", 7, seq, now_ms=at)
    assert store.prune_touches(older_than_ms=2_500) == 2
    assert store.record_touch("lamp-a", 7, 2, now_ms=4_000) is False  # kept
    assert store.record_touch("lamp-a", 7, 0, now_ms=4_000) is True  # forgotten


def test_two_relays_racing_on_one_touch_record_it_once(
    store: Store, open_another: Callable[[], Store]
) -> None:
    add(store, "lamp-a")
    relays = [open_another(), open_another()]
    rounds = 40
    start = threading.Barrier(len(relays))

    def relay_loop(relay: Store) -> list[bool]:
        results = []
        for seq in range(rounds):
            start.wait(timeout=30)
            results.append(relay.record_touch("lamp-a", 7, seq, now_ms=1_000 + seq))
        return results

    with ThreadPoolExecutor(len(relays)) as pool:
        first, second = pool.map(relay_loop, relays)

    assert [a + b for a, b in zip(first, second, strict=True)] == [1] * rounds


def test_two_relays_racing_for_the_last_seat_fill_it_once(
    store: Store, open_another: Callable[[], Store]
) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c")
    store.create_group(["lamp-a"], name="G", group_id="g-1")
    relays = {"lamp-b": open_another(), "lamp-c": open_another()}
    start = threading.Barrier(len(relays))

    def join(lamp_id: str) -> str:
        start.wait(timeout=30)
        try:
            relays[lamp_id].join_group(lamp_id, "g-1", max_size=2)
        except GroupFullError:
            return "full"
        return "joined"

    for _ in range(10):
        with ThreadPoolExecutor(len(relays)) as pool:
            outcomes = dict(zip(relays, pool.map(join, relays), strict=True))
        assert sorted(outcomes.values()) == ["full", "joined"]
        assert len(member_ids(store, "g-1")) == 2
        winner = next(lamp for lamp, outcome in outcomes.items() if outcome == "joined")
        store.leave_group(winner)


def test_record_touches_records_a_batch_in_one_go(store: Store) -> None:
    add(store, "lamp-a", "lamp-b", "lamp-c")
    store.record_touch("lamp-b", 7, 1, now_ms=4_000)
    revision = store.membership_revision()
    recorded = store.record_touches(
        [
            TouchKey("lamp-a", 7, 1),
            TouchKey("lamp-b", 7, 1),  # recorded before
            TouchKey("lamp-a", 7, 1),  # repeated within the batch: new only the first time
            TouchKey("lamp-a", 7, 2),
        ],
        now_ms=5_000,
        watch=["lamp-a", "lamp-b", "lamp-c", "ghost"],
        revision=revision,
    )
    assert recorded is not None
    assert recorded.new == (True, False, False, True)
    assert recorded.received_ms == (5_000, 4_000, 5_000, 5_000)
    # As before the batch; an unknown lamp is absent.
    assert recorded.last_touch_ms == {"lamp-a": None, "lamp-b": 4_000, "lamp-c": None}
    assert lamp(store, "lamp-a").last_touch_ms == 5_000
    assert lamp(store, "lamp-b").last_touch_ms == 4_000  # only new touches move it
    assert store.record_touch("lamp-a", 7, 2, now_ms=6_000) is False
    # A relay whose clock is behind does not move last_touch_ms back.
    later = store.record_touches(
        [TouchKey("lamp-a", 7, 3)], now_ms=4_500, watch=["lamp-a"], revision=revision
    )
    assert later is not None
    assert later.new == (True,)
    assert later.last_touch_ms == {"lamp-a": 5_000}
    assert lamp(store, "lamp-a").last_touch_ms == 5_000


def test_record_touches_tells_when_a_repeat_was_first_recorded(
    store: Store, open_another: Callable[[], Store]
) -> None:
    """The relay forwards a repeat again if its broker connection ended soon after the touch was
    recorded (server/confirmations.py), whichever relay recorded it."""
    add(store, "lamp-a", "lamp-b")
    other = open_another()  # another relay, or this one before a restart
    revision = store.membership_revision()
    other.record_touch("lamp-a", 7, 1, now_ms=4_000)
    earlier = other.record_touches(
        [TouchKey("lamp-b", 7, 1)], now_ms=4_500, watch=[], revision=revision
    )
    assert earlier is not None
    assert earlier.received_ms == (4_500,)
    keys = [TouchKey("lamp-a", 7, 1), TouchKey("lamp-b", 7, 1), TouchKey("lamp-a", 7, 2)]
    recorded = store.record_touches([*keys, keys[2]], now_ms=5_000, watch=[], revision=revision)
    assert recorded is not None
    assert recorded.new == (False, False, True, False)
    assert recorded.received_ms == (4_000, 4_500, 5_000, 5_000)
    again = other.record_touches(keys, now_ms=9_000, watch=[], revision=revision)
    assert again is not None
    assert again.new == (False, False, False)
    assert again.received_ms == (4_000, 4_500, 5_000)  # a repeat does not move it


def test_the_last_received_touch_is_the_newest_recorded(store: Store) -> None:
    """Read by a starting relay: its predecessor was alive then (server/confirmations.py)."""
    assert store.last_received_ms() is None
    add(store, "lamp-a", "lamp-b")
    store.record_touch("lamp-a", 7, 1, now_ms=5_000)
    store.record_touches(
        [TouchKey("lamp-b", 7, 1)], now_ms=4_000, watch=[], revision=store.membership_revision()
    )  # a relay whose clock is behind
    assert store.last_received_ms() == 5_000
    store.prune_touches(older_than_ms=6_000)
    assert store.last_received_ms() is None


def test_record_touches_refuses_a_batch_decided_on_old_groups(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    revision = store.membership_revision()
    store.create_group(["lamp-a", "lamp-b"], name="G", group_id="g-1")
    assert (
        store.record_touches(
            [TouchKey("lamp-a", 7, 1)], now_ms=5_000, watch=["lamp-a"], revision=revision
        )
        is None
    )
    assert lamp(store, "lamp-a").last_touch_ms is None  # nothing recorded
    assert store.record_touch("lamp-a", 7, 1, now_ms=5_000) is True


def test_record_touches_with_an_unknown_lamp_records_nothing(store: Store) -> None:
    add(store, "lamp-a")
    with pytest.raises(UnknownLampError, match="ghost"):
        store.record_touches(
            [TouchKey("lamp-a", 7, 1), TouchKey("ghost", 7, 1)],
            now_ms=5_000,
            watch=["lamp-a"],
            revision=store.membership_revision(),
        )
    assert store.record_touch("lamp-a", 7, 1, now_ms=5_000) is True


def test_the_membership_revision_moves_with_groups_and_colours_only(
    store: Store, open_another: Callable[[], Store]
) -> None:
    other = open_another()  # another relay, or the CLI
    seen = [store.membership_revision()]

    def moved() -> bool:
        seen.append(store.membership_revision())
        return seen[-1] > seen[-2]

    add(other, "lamp-a", "lamp-b", "lamp-c")
    assert moved()
    other.create_group(["lamp-a", "lamp-b"], name="G", group_id="g-1")
    assert moved()
    other.join_group("lamp-c", "g-1", max_size=8)
    assert moved()
    other.set_profile("lamp-a", color="#00ff00")
    assert moved()
    other.leave_group("lamp-c")
    assert moved()
    other.remove_lamp("lamp-b")
    assert moved()
    # What the relay reads fresh anyway does not invalidate its copy of the groups.
    other.record_touch("lamp-a", 7, 1, now_ms=5_000)
    other.set_online("lamp-a", online=True)
    other.save_code(code("ABCDEFGH", group_id="g-1", created_by="lamp-a", expires_ms=9_000))
    other.prune_touches(older_than_ms=10_000)
    assert not moved()
    # Refused changes leave it too.
    with pytest.raises(GroupFullError):
        other.join_group("lamp-c", "g-1", max_size=1)
    assert other.join_group("lamp-a", "g-1", max_size=8).id == "g-1"  # already a member
    assert not moved()


def test_two_relays_racing_on_one_batch_record_each_touch_once(
    store: Store, open_another: Callable[[], Store]
) -> None:
    add(store, "lamp-a", "lamp-b")
    relays = [open_another(), open_another()]
    revision = store.membership_revision()
    rounds = 20
    start = threading.Barrier(len(relays))

    def relay_loop(relay: Store, order: int) -> list[tuple[bool, ...]]:
        results = []
        for seq in range(rounds):
            keys = [TouchKey("lamp-a", 7, seq), TouchKey("lamp-b", 7, seq)][::order]
            now_ms = order * 1_000 + seq  # each relay's own clock
            start.wait(timeout=30)
            for _attempt in range(10):  # PostgreSQL may pick one as a deadlock victim
                try:
                    recorded = relay.record_touches(
                        keys, now_ms=now_ms, watch=[], revision=revision
                    )
                except StoreUnavailableError:
                    continue
                assert recorded is not None
                results.append(recorded.new[::order])
                other_ms = -order * 1_000 + seq
                for new, received_ms in zip(recorded.new, recorded.received_ms, strict=True):
                    # Not new: the other relay's time, or (recorded while this ran) its own.
                    assert received_ms == now_ms or (not new and received_ms == other_ms)
                break
        return results

    with ThreadPoolExecutor(len(relays)) as pool:
        first, second = pool.map(relay_loop, relays, [1, -1])

    assert len(first) == len(second) == rounds
    for one, other in zip(first, second, strict=True):
        assert [a + b for a, b in zip(one, other, strict=True)] == [1, 1]


# -- pairing codes ---------------------------------------------------------------------------------
def test_a_code_is_used_once(store: Store) -> None:
    add(store, "lamp-a")
    store.create_group(["lamp-a"], name="G", group_id="g-1")
    saved = code("ABC123", group_id="g-1", created_by="lamp-a", expires_ms=10 * MINUTE_MS)
    store.save_code(saved)

    assert store.get_code("ABC123") == saved
    assert store.take_code("ABC123", now_ms=MINUTE_MS) == saved
    assert store.take_code("ABC123", now_ms=MINUTE_MS) is None
    assert store.get_code("ABC123") is None
    assert store.take_code("NOSUCH", now_ms=MINUTE_MS) is None


def test_an_expired_code_cannot_be_taken_but_can_be_recognised(store: Store) -> None:
    add(store, "lamp-a")
    store.create_group(["lamp-a"], name="G", group_id="g-1")
    saved = code("ABC123", group_id="g-1", created_by="lamp-a", expires_ms=10 * MINUTE_MS)
    store.save_code(saved)

    assert store.take_code("ABC123", now_ms=10 * MINUTE_MS) is None  # expires_ms is the end
    assert store.get_code("ABC123") == saved  # so the relay can say "expired", not "wrong"
    assert store.take_code("ABC123", now_ms=10 * MINUTE_MS - 1) == saved


def test_prune_codes_deletes_only_expired_ones(store: Store) -> None:
    add(store, "lamp-a")
    store.create_group(["lamp-a"], name="G", group_id="g-1")
    for text, expires in [("OLD111", 1_000), ("OLD222", 2_000), ("NEW333", 3_000)]:
        store.save_code(code(text, group_id="g-1", created_by="lamp-a", expires_ms=expires))

    assert store.prune_codes(now_ms=2_000) == 2
    assert store.get_code("OLD111") is None
    assert store.get_code("NEW333") is not None


def test_save_code_refuses_what_could_never_be_used(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    store.create_group(["lamp-a"], name="G", group_id="g-1")
    store.save_code(code("ABC123", group_id="g-1", created_by="lamp-a", expires_ms=MINUTE_MS))

    with pytest.raises(CodeExistsError) as error:
        store.save_code(code("ABC123", group_id="g-1", created_by="lamp-a", expires_ms=MINUTE_MS))
    assert "ABC123" not in str(error.value)  # a code is a secret while it lives
    with pytest.raises(StoreError, match="'lamp-b' is not a member of group 'g-1'"):
        store.save_code(code("XYZ789", group_id="g-1", created_by="lamp-b", expires_ms=MINUTE_MS))
    with pytest.raises(UnknownGroupError, match="g-gone"):
        store.save_code(code("XYZ789", group_id="g-gone", created_by="lamp-a", expires_ms=1))
    with pytest.raises(UnknownLampError, match="ghost"):
        store.save_code(code("XYZ789", group_id="g-1", created_by="ghost", expires_ms=1))
    assert store.get_code("XYZ789") is None


def test_a_lamp_that_leaves_takes_its_codes_along(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    store.create_group(["lamp-a", "lamp-b"], name="G", group_id="g-1")
    store.save_code(code("FROM-A", group_id="g-1", created_by="lamp-a", expires_ms=MINUTE_MS))
    store.save_code(code("FROM-B", group_id="g-1", created_by="lamp-b", expires_ms=MINUTE_MS))

    store.leave_group("lamp-a")

    assert store.get_code("FROM-A") is None  # it invited into a group lamp-a has left
    assert store.get_code("FROM-B") is not None
    store.leave_group("lamp-b")  # the group goes, and every code into it
    assert store.get_code("FROM-B") is None


def test_removing_a_lamp_forgets_everything_about_it(store: Store) -> None:
    add(store, "lamp-a", "lamp-b")
    store.create_group(["lamp-a", "lamp-b"], name="G", group_id="g-1")
    store.save_code(code("FROM-A", group_id="g-1", created_by="lamp-a", expires_ms=MINUTE_MS))
    store.record_touch("lamp-a", 7, 1, now_ms=1_000)

    remaining = store.remove_lamp("lamp-a")

    assert remaining is not None
    assert [member.id for member in remaining.members] == ["lamp-b"]
    assert store.get_lamp("lamp-a") is None
    assert store.get_code("FROM-A") is None
    add(store, "lamp-a")  # the id is free again, with no old touch records
    assert store.record_touch("lamp-a", 7, 1, now_ms=2_000) is True
    assert store.group_of("lamp-a") is None
    assert store.remove_lamp("lamp-b") is None  # the last member: the group is deleted
    assert store.list_groups() == []


# -- schema ----------------------------------------------------------------------------------------
def test_migrations_are_numbered_without_gaps() -> None:
    assert [step.version for step in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def test_migrate_again_changes_nothing(store: Store, open_another: Callable[[], Store]) -> None:
    add(store, "lamp-a")
    assert store.migrate() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    assert open_another().migrate() == SCHEMA_VERSION
    assert [lamp.id for lamp in store.list_lamps()] == ["lamp-a"]


def test_a_schema_newer_than_the_code_is_refused_untouched(backend: Backend, store: Store) -> None:
    add(store, "lamp-a")
    backend.execute("INSERT INTO schema_version (version) VALUES (99)")

    with pytest.raises(SchemaTooNewError) as error:
        store.migrate()
    assert f"has schema version 99, but this touchlamp knows versions up to {SCHEMA_VERSION}" in (
        str(error.value)
    )
    with pytest.raises(SchemaTooNewError):
        backend.open()
    assert [lamp.id for lamp in store.list_lamps()] == ["lamp-a"]


# -- opening ---------------------------------------------------------------------------------------
def test_open_store_picks_the_backend_from_the_setting(backend: Backend) -> None:
    store = backend.open()
    try:
        assert isinstance(store, SqlStore)
        assert store.dialect == backend.name
    finally:
        store.close()


def test_open_store_creates_the_directory_of_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "touchlamp" / "relay.db"
    store = open_store(path)
    try:
        add(store, "lamp-a")
    finally:
        store.close()
    assert path.is_file()


def test_a_throwaway_store_lives_in_memory() -> None:
    store = open_store(":memory:")
    try:
        add(store, "lamp-a")
        assert [lamp.id for lamp in store.list_lamps()] == ["lamp-a"]
    finally:
        store.close()


def test_a_busy_sqlite_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    open_store(path).close()
    store = SqliteStore(path, busy_timeout_s=0)
    with sqlite3.connect(path, isolation_level=None) as other_process:
        other_process.execute("BEGIN IMMEDIATE")  # holds the write lock
        with pytest.raises(StoreUnavailableError, match="held the write lock past the busy"):
            store.set_online("lamp-a", online=True)
        other_process.execute("ROLLBACK")
    store.close()


def test_an_unreachable_postgres_is_named_without_its_password() -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    with pytest.raises(StoreUnavailableError) as error:
        open_store("postgresql://relay:s3cret@127.0.0.1:1/touchlamp")
    message = str(error.value)
    assert message.startswith(
        "cannot connect to the PostgreSQL store postgresql://relay@127.0.0.1:1/touchlamp"
    )
    assert "s3cret" not in message


def test_a_postgres_dsn_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "touchlamp.server.store.postgres", raising=False)
    with pytest.raises(StoreError, match=r"pip install 'touchlamp\[postgres\]'"):
        open_store("postgresql://relay@127.0.0.1:5432/touchlamp")


@pytest.mark.postgres
def test_a_postgres_store_recovers_after_its_connection_is_cut(tmp_path: Path) -> None:
    with fresh_backend("postgres", tmp_path) as backend:
        store = backend.open()
        try:
            add(store, "lamp-a")
            backend.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            with pytest.raises(StoreUnavailableError, match="reopened on the next call"):
                store.set_online("lamp-a", online=True)
            assert store.set_online("lamp-a", online=True) is True
        finally:
            store.close()
