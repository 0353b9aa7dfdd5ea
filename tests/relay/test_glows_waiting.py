"""The rule for glows the broker answered "no matching subscribers": kept in order per lamp, with
their expiry and a bound, sent again when the lamp is back (server/glows_waiting.py)."""

from __future__ import annotations

import pytest

from tests.support.clock import FakeClock
from touchlamp.server.glows_waiting import GlowsWaiting, WaitingGlow


def payloads(glows: list[WaitingGlow]) -> list[bytes]:
    return [glow.payload for glow in glows]


def test_a_bounced_glow_and_the_ones_behind_it_go_in_order_when_the_lamp_is_online() -> None:
    clock = FakeClock(100.0)
    waiting = GlowsWaiting(clock=clock)
    first, second = (waiting.new("b", p, expiry_seconds=60) for p in (b"1", b"2"))
    # both went out before the first answer; both bounced, the second answered first
    waiting.answered(second, kept=True, resent=False)
    waiting.answered(first, kept=True, resent=False)
    third = waiting.new("b", b"3", expiry_seconds=60)
    assert waiting.must_wait(third)  # behind the two kept
    assert len(waiting) == 3
    assert waiting.take() == ([], 0)  # nothing is due before the lamp is back or the backoff

    waiting.online("b")
    taken, expired = waiting.take()
    assert (payloads(taken), expired) == ([b"1", b"2", b"3"], 0)
    fourth = waiting.new("b", b"4", expiry_seconds=60)
    assert waiting.must_wait(fourth)  # the round is not answered yet
    for glow in taken:
        waiting.answered(glow, kept=False, resent=True)
    assert payloads(waiting.take()[0]) == [b"4"]  # the round was taken: the rest follows
    waiting.answered(fourth, kept=False, resent=True)
    assert len(waiting) == 0
    assert not waiting.must_wait(waiting.new("b", b"5", expiry_seconds=60))


def test_without_news_of_the_lamp_the_oldest_is_tried_alone_with_backoff() -> None:
    clock = FakeClock(100.0)
    waiting = GlowsWaiting(clock=clock, retry_min_seconds=1.0, retry_max_seconds=4.0)
    glows = [waiting.new("b", bytes([n]), expiry_seconds=600) for n in range(3)]
    for glow in glows:
        waiting.answered(glow, kept=True, resent=False)
    delays = []
    for _ in range(4):
        due = waiting.next_due()
        assert due is not None
        delays.append(due - clock.now)
        clock.now = due
        [probe] = waiting.take()[0]
        assert probe is glows[0]
        waiting.answered(probe, kept=True, resent=True)  # still nobody subscribed
    assert delays == [1.0, 2.0, 4.0, 4.0]
    clock.now = waiting.next_due() or 0
    [probe] = waiting.take()[0]
    waiting.answered(probe, kept=False, resent=True)  # taken: the others follow at once
    assert payloads(waiting.take()[0]) == [b"\x01", b"\x02"]


def test_expired_glows_are_dropped_and_counted_and_the_bounds_push_out_the_oldest() -> None:
    clock = FakeClock(100.0)
    waiting = GlowsWaiting(clock=clock, per_lamp=3, total=4)
    old = waiting.new("b", b"old", expiry_seconds=5)
    waiting.answered(old, kept=True, resent=False)
    for n in range(3):
        assert waiting.must_wait(waiting.new("b", bytes([n]), expiry_seconds=60))
    assert waiting.dropped() == 1  # per lamp: "old" went
    assert waiting.dropped() == 0
    for n in range(2):
        waiting.answered(waiting.new("c", bytes([n]), expiry_seconds=60), kept=True, resent=False)
    assert waiting.dropped() == 1  # in all: the oldest of any lamp
    assert len(waiting) == 4

    late = waiting.new("d", b"late", expiry_seconds=5)
    waiting.answered(late, kept=True, resent=False)
    assert waiting.dropped() == 1  # b's oldest again
    clock.now += 10
    waiting.online("d")
    waiting.online("b")
    taken, expired = waiting.take()
    assert expired == 1
    assert payloads(taken) == [b"\x02", b"\x00"]  # c: the oldest alone, its backoff ran out


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="per_lamp"):
        GlowsWaiting(clock=FakeClock(100.0), per_lamp=10, total=5)


def test_a_lamp_back_while_its_probe_is_out_gets_everything_once_the_probe_is_answered() -> None:
    clock = FakeClock(100.0)
    waiting = GlowsWaiting(clock=clock)
    glows = [waiting.new("b", bytes([n]), expiry_seconds=600) for n in range(3)]
    for glow in glows:
        waiting.answered(glow, kept=True, resent=False)
    clock.now = waiting.next_due() or 0
    [probe] = waiting.take()[0]
    waiting.online("b")  # B subscribed just after the probe was published
    clock.now += 0.001
    assert waiting.take() == ([], 0)  # the probe's answer first
    waiting.answered(probe, kept=True, resent=True)  # it bounced: B was not there yet
    assert payloads(waiting.take()[0]) == [b"\x00", b"\x01", b"\x02"]  # no backoff wait


def test_a_lone_glow_bounced_while_its_lamp_came_back_goes_again_at_once() -> None:
    clock = FakeClock(100.0)
    waiting = GlowsWaiting(clock=clock)
    glow = waiting.new("b", b"only", expiry_seconds=600)
    waiting.answered(glow, kept=True, resent=False)
    clock.now = waiting.next_due() or 0
    [probe] = waiting.take()[0]
    waiting.online("b")
    waiting.answered(probe, kept=True, resent=True)
    assert payloads(waiting.take()[0]) == [b"only"]
