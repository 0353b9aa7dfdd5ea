"""The forwarding rule on a real SQLite store and a clock moved by hand: one touch at a time, a
batch at a time (the same answers), and with groups changed by another store user meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.relay.helpers import add_lamps
from tests.support.clock import START, FakeClock
from touchlamp.protocol import Glow, Topics, Touch, encode
from touchlamp.server.confirmations import ConnectionEnds
from touchlamp.server.forwarding import (
    Addressed,
    Drop,
    DropReason,
    Forward,
    ForwardingRule,
    Received,
)
from touchlamp.server.ratelimit import RateLimiter
from touchlamp.server.store import Store, open_store

TOPICS = Topics()
STREAM = 3_735_928_559


def touch(seq: int, *, stream: int = STREAM, color: str = "#ff8800") -> bytes:
    return encode(Touch(seq=seq, stream=stream, color=color, ts=1))


def make_rule(
    store: Store,
    clock: FakeClock,
    *,
    window: float = 60.0,
    burst: int = 100,
    ends: ConnectionEnds | None = None,
) -> ForwardingRule:
    return ForwardingRule(
        store=store,
        limiter=RateLimiter(per_second=1.0, burst=burst, clock=clock),
        clock=clock,
        mutual_window_seconds=window,
        connection_ends=ends,
    )


def decide(rule: ForwardingRule, sender: str, payload: bytes) -> Forward | Drop:
    return rule.decide(sender, payload, topic=TOPICS.touch(sender))


def forwarded(decision: Forward | Drop) -> dict[str, Glow]:
    assert isinstance(decision, Forward), f"expected a forward, got {decision}"
    by_lamp = {addressed.to: addressed.glow for addressed in decision.glows}
    assert len(by_lamp) == len(decision.glows), "one glow per lamp"
    return by_lamp


def test_a_touch_glows_on_every_other_member_in_the_touch_colour(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c", group="home")
    glows = forwarded(decide(make_rule(store, clock), "lamp-b", touch(17, color="#12AB34")))
    assert set(glows) == {"lamp-a", "lamp-c"}
    for glow in glows.values():
        assert glow == Glow(
            touch=f"lamp-b:{STREAM}:17",
            sender="lamp-b",
            color="#12ab34",
            mutual=False,
            at=int(START * 1000),
        )


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'{"seq": 1}',
        b'{"seq": -1, "stream": 1, "color": "#000000", "ts": 1}',
        b'{"seq": 1, "stream": 1, "color": "#000000", "ts": 1, "from": "lamp-c"}',
        b"\xff" * 5000,
    ],
)
def test_a_bad_payload_is_dropped_with_the_reason(store: Store, payload: bytes) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    decision = decide(make_rule(store, FakeClock()), "lamp-a", payload)
    assert isinstance(decision, Drop)
    assert decision.reason is DropReason.BAD_PAYLOAD
    assert decision.error is not None
    assert decision.error.topic == TOPICS.touch("lamp-a")
    assert not decision.notify_sender


def test_an_unknown_lamp_is_told_it_is_not_paired(store: Store) -> None:
    decision = decide(make_rule(store, FakeClock()), "lamp-ghost", touch(1))
    assert decision == Drop(DropReason.UNKNOWN_LAMP, notify_sender=True)


def test_an_unpaired_lamp_is_told_it_is_not_paired(store: Store) -> None:
    add_lamps(store, "lamp-a")
    decision = decide(make_rule(store, FakeClock()), "lamp-a", touch(1))
    assert decision == Drop(DropReason.UNPAIRED, notify_sender=True)


def test_a_lamp_alone_in_its_group_lights_nobody(store: Store) -> None:
    add_lamps(store, "lamp-a", group="solo")
    assert decide(make_rule(store, FakeClock()), "lamp-a", touch(1)) == Drop(DropReason.ALONE)


def test_a_redelivered_touch_is_forwarded_once(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, FakeClock())
    assert isinstance(decide(rule, "lamp-a", touch(5)), Forward)
    assert decide(rule, "lamp-a", touch(5)) == Drop(DropReason.DUPLICATE)
    assert isinstance(decide(rule, "lamp-a", touch(6)), Forward)


def test_the_duplicate_record_survives_a_relay_restart(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite3"
    first = open_store(path)
    add_lamps(first, "lamp-a", "lamp-b", group="home")
    assert isinstance(decide(make_rule(first, FakeClock()), "lamp-a", touch(5)), Forward)
    first.close()
    second = open_store(path)
    try:
        assert decide(make_rule(second, FakeClock()), "lamp-a", touch(5)) == Drop(
            DropReason.DUPLICATE
        )
    finally:
        second.close()


def test_a_repeat_is_forwarded_again_if_a_connection_ended_soon_after_its_record(
    store: Store,
) -> None:
    """The broker may have died with the glows unsaved (server/confirmations.py): then the
    lamp's repeat goes out again, same touch id, so the peer still shows it once."""
    clock = FakeClock()
    ends = ConnectionEnds(window_seconds=60.0, clock=clock)
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, clock, ends=ends)
    first = decide(rule, "lamp-a", touch(5))
    assert isinstance(first, Forward)
    assert decide(rule, "lamp-a", touch(5)) == Drop(DropReason.DUPLICATE)
    clock.advance(59.0)
    ends.ended()  # the broker connection ended before the window passed
    clock.advance(600.0)  # the lamp's repeat may come much later (its outbox keeps it)
    again = decide(rule, "lamp-a", touch(5))
    assert isinstance(again, Forward)
    assert again.repeat
    assert forwarded(again)["lamp-b"].touch == forwarded(first)["lamp-b"].touch
    # A touch recorded after that end, with no end within a window of it: a plain duplicate.
    assert isinstance(decide(rule, "lamp-a", touch(6)), Forward)
    clock.advance(60.0)
    ends.ended()
    assert decide(rule, "lamp-a", touch(6)) == Drop(DropReason.DUPLICATE)


def test_a_lamp_whose_counter_was_reset_is_forwarded_again(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, FakeClock())
    assert isinstance(decide(rule, "lamp-a", touch(1, stream=111)), Forward)
    # Factory reset: a new random stream, and the counter starts over.
    glows = forwarded(decide(rule, "lamp-a", touch(1, stream=222)))
    assert glows["lamp-b"].touch == "lamp-a:222:1"


def test_a_flooding_lamp_is_rate_limited_and_others_still_pass(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, clock, burst=3)
    results = [decide(rule, "lamp-a", touch(seq)) for seq in range(10)]
    assert [isinstance(result, Forward) for result in results] == [True] * 3 + [False] * 7
    assert all(r == Drop(DropReason.RATE_LIMITED) for r in results[3:])
    assert isinstance(decide(rule, "lamp-b", touch(1)), Forward)
    clock.advance(1.0)  # one token back at 1/s
    assert isinstance(decide(rule, "lamp-a", touch(11)), Forward)


def test_touches_crossing_within_the_window_are_mutual_for_both(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c", group="home")
    rule = make_rule(store, clock, window=60)
    first = forwarded(decide(rule, "lamp-a", touch(1, color="#ff0000")))
    assert not any(glow.mutual for glow in first.values())

    clock.advance(59.9)
    second = forwarded(decide(rule, "lamp-b", touch(1, color="#00ff00")))
    # A, whose touch B answered, sees B's colour as mutual; C only watched.
    assert second["lamp-a"].mutual
    assert second["lamp-a"].color == "#00ff00"
    assert not second["lamp-c"].mutual
    # B gets the answer to its own touch: A's colour (A's stored colour), marked mutual.
    answer = second["lamp-b"]
    assert answer.mutual
    assert answer.sender == "lamp-a"
    assert answer.color == "#ff0000"
    assert answer.touch == f"lamp-b:{STREAM}:1"


def test_touches_further_apart_than_the_window_are_not_mutual(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, clock, window=60)
    decide(rule, "lamp-a", touch(1))
    clock.advance(60.001)
    glows = forwarded(decide(rule, "lamp-b", touch(1)))
    assert set(glows) == {"lamp-a"}
    assert not glows["lamp-a"].mutual


def test_a_lamp_touching_twice_is_not_mutual_with_itself(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, clock)
    decide(rule, "lamp-a", touch(1))
    clock.advance(1)
    glows = forwarded(decide(rule, "lamp-a", touch(2)))
    assert set(glows) == {"lamp-b"}
    assert not glows["lamp-b"].mutual


def test_the_answer_comes_from_the_member_who_touched_last(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c", group="home")
    rule = make_rule(store, clock)
    decide(rule, "lamp-a", touch(1))
    clock.advance(5)
    decide(rule, "lamp-b", touch(1))
    clock.advance(5)
    glows = forwarded(decide(rule, "lamp-c", touch(1)))
    assert glows["lamp-a"].mutual
    assert glows["lamp-b"].mutual
    assert glows["lamp-c"].sender == "lamp-b"


def test_a_redelivered_touch_does_not_make_a_later_one_mutual(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, clock)
    decide(rule, "lamp-a", touch(1))
    clock.advance(600)
    assert decide(rule, "lamp-a", touch(1)) == Drop(DropReason.DUPLICATE)
    glows = forwarded(decide(rule, "lamp-b", touch(1)))
    assert not glows["lamp-a"].mutual


def test_a_window_of_zero_turns_mutual_off(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    rule = make_rule(store, clock, window=0)
    decide(rule, "lamp-a", touch(1))
    glows = forwarded(decide(rule, "lamp-b", touch(1)))
    assert glows == {"lamp-a": glows["lamp-a"]}
    assert not glows["lamp-a"].mutual


def test_every_glow_is_addressed_to_a_member(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    add_lamps(store, "lamp-x", "lamp-y", group="other")
    decision = decide(make_rule(store, FakeClock()), "lamp-a", touch(1))
    assert isinstance(decision, Forward)
    assert [a.to for a in decision.glows] == ["lamp-b"]
    assert all(isinstance(a, Addressed) for a in decision.glows)


# -- batches ---------------------------------------------------------------------------------------
_SENDERS = ("lamp-a", "lamp-b", "lamp-c", "lamp-d", "lamp-s", "lamp-x")  # d: unpaired; x: unknown
_one_touch = st.tuples(
    st.sampled_from(_SENDERS),
    st.integers(min_value=0, max_value=4),  # seq: small, so repeats come up
    st.sampled_from([STREAM, 7]),
    st.booleans(),  # flagged DUP by the broker
    st.booleans(),  # a bad payload instead
)
_batches = st.lists(
    st.tuples(
        st.lists(_one_touch, min_size=1, max_size=8), st.sampled_from([0.0, 1.0, 30.0, 61.0])
    ),
    min_size=1,
    max_size=6,
)


def _comparable(decision: Forward | Drop) -> object:
    """Errors compare by identity; their messages are what counts."""
    if isinstance(decision, Drop) and decision.error is not None:
        return (decision.reason, decision.notify_sender, str(decision.error))
    return decision


def _world(clock: FakeClock) -> tuple[Store, ForwardingRule]:
    store = open_store(":memory:")
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c", group="home")
    add_lamps(store, "lamp-d")
    add_lamps(store, "lamp-s", group="solo")
    # A connection ended 40 s in: repeats of touches recorded in the 60 s before are forwarded
    # again, others dropped (the pauses put touches on both sides).
    ends = ConnectionEnds(window_seconds=60.0, clock=clock)
    ends.ended_at(int((START + 40.0) * 1000))
    return store, make_rule(store, clock, window=60.0, burst=6, ends=ends)


@settings(max_examples=60, deadline=None)
@given(batches=_batches)
def test_a_batch_is_decided_exactly_as_its_touches_one_by_one(
    batches: list[tuple[list[tuple[str, int, int, bool, bool]], float]],
) -> None:
    one_clock, batch_clock = FakeClock(), FakeClock()
    one_store, one_by_one = _world(one_clock)
    batch_store, batched = _world(batch_clock)
    try:
        for touches, pause in batches:
            received = [
                Received(
                    sender=sender,
                    payload=b"{" if bad else touch(seq, stream=stream),
                    topic=TOPICS.touch(sender),
                    redelivered=dup,
                )
                for sender, seq, stream, dup, bad in touches
            ]
            expected = [
                one_by_one.decide(r.sender, r.payload, topic=r.topic, redelivered=r.redelivered)
                for r in received
            ]
            got = batched.decide_all(batched.screen(received))
            assert [_comparable(d) for d in got] == [_comparable(d) for d in expected]
            one_clock.advance(pause)
            batch_clock.advance(pause)
        for lamp_id in _SENDERS[:5]:
            assert batch_store.get_lamp(lamp_id) == one_store.get_lamp(lamp_id)
    finally:
        one_store.close()
        batch_store.close()


# -- groups changed by someone else (another relay, `touchlamp relay pair`) ----------------------
def test_a_group_changed_elsewhere_is_used_by_the_very_next_touch(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_store(tmp_path / "relay.sqlite3")
    elsewhere = open_store(tmp_path / "relay.sqlite3")
    try:
        add_lamps(store, "lamp-a", "lamp-b", "lamp-c", group="home")
        add_lamps(store, "lamp-d")
        rule = make_rule(store, clock, window=60.0)
        assert set(forwarded(decide(rule, "lamp-a", touch(1)))) == {"lamp-b", "lamp-c"}

        elsewhere.join_group("lamp-d", "g-home", max_size=8)
        assert set(forwarded(decide(rule, "lamp-a", touch(2)))) == {"lamp-b", "lamp-c", "lamp-d"}

        elsewhere.leave_group("lamp-c")
        assert decide(rule, "lamp-c", touch(1)) == Drop(DropReason.UNPAIRED, notify_sender=True)
        elsewhere.remove_lamp("lamp-b")
        assert decide(rule, "lamp-b", touch(1)) == Drop(DropReason.UNKNOWN_LAMP, notify_sender=True)

        # A new colour shows in the next mutual answer: lamp-d answers lamp-a's touch.
        elsewhere.set_profile("lamp-d", color="#123456")
        assert "lamp-a" in forwarded(decide(rule, "lamp-d", touch(1)))
        answer = forwarded(decide(rule, "lamp-a", touch(3)))["lamp-a"]
        assert (answer.sender, answer.color, answer.mutual) == ("lamp-d", "#123456", True)
    finally:
        store.close()
        elsewhere.close()
