"""Scenario 7: a lamp's clock wrong by a year; a retained message left on a touch topic by a
misconfigured client.

Rules: touches still reach the peer's core exactly once and light its LED whatever the lamps'
clocks say; a retained touch never lights anything — not when it is published, not when the
relay or a lamp reconnects.
"""

from __future__ import annotations

import datetime as dt

from tests.e2e.world import same_hue
from tests.faults.lamps import FaultLamp, assert_delivered
from tests.faults.world import FaultWorld
from tests.support.clock import FakeClock
from tests.support.raw_mqtt import RawClient
from tests.support.waiting import wait_until
from touchlamp.config.looks import LookSettings, QuietHours
from touchlamp.device.clock import ManualClock, epoch_ms
from touchlamp.device.core import LampCore
from touchlamp.device.events import Connected, GlowReceived
from touchlamp.protocol import Touch, encode, touch_id

AMBER, BLUE = "#ff8c1a", "#3c78ff"
YEAR = dt.timedelta(days=365)


def _glowing_in(lamp: FaultLamp, color: str) -> bool:
    led = lamp.led()
    return max(led) > 0.3 and same_hue(led, color, gamma=lamp.plan.looks.gamma)


def test_lamps_whose_clocks_are_a_year_off_still_light_each_other(world: FaultWorld) -> None:
    """Lamp A's clock is a year behind, lamp B's a year ahead. The relay stamps glows with its
    own clock, so B sees every glow as "a year old" by its own clock."""
    a = world.lamp("lamp-a", color=AMBER, clock=FakeClock.shifted(-YEAR.total_seconds()))
    b = world.lamp("lamp-b", color=BLUE, clock=FakeClock.shifted(YEAR.total_seconds()))
    world.pair(a, b)
    with world.relay():
        world.start(a, b)
        a.touch()
        assert_delivered(a, [b])
        wait_until(lambda: _glowing_in(b, AMBER), "lamp B glowing in lamp A's amber")
        b.touch()
        assert_delivered(b, [a])
        wait_until(lambda: _glowing_in(a, BLUE), "lamp A glowing in lamp B's blue")


def test_a_retained_touch_never_lights_anything(world: FaultWorld) -> None:
    """The broker's ACL lets a lamp publish on its touch topic, and dynamic security cannot
    forbid the retain flag: a misconfigured client with lamp A's login leaves a retained touch.
    Mosquitto 2.0.11 hands retained messages to a *new shared subscription* too (measured), so
    every relay start would receive it again."""
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    topic = world.broker.topics.touch("lamp-a")
    stream = 0xBAD5EED

    def publish_retained(seq: int) -> None:
        client = RawClient.mqtt5(
            port=world.broker.port,
            username="lamp-a",
            password=a.plan.password,
            client_id="lamp-a",  # the broker allows no other (it takes over lamp A's session)
        )
        try:
            touch = Touch(seq=seq, stream=stream, color="#ff0000", ts=0)
            client.publish(topic, encode(touch), retain=True)
        finally:
            client.close()

    world.start(b)
    publish_retained(1)  # no relay has ever subscribed: it waits, retained
    with world.relay() as relay:
        world.start(a)
        publish_retained(2)  # the relay is subscribed: it is delivered at once, too
        a.touch()  # a real touch after both: it must be the only glow B's core gets
        assert_delivered(a, [b])
        bad = relay.metrics.bad_messages.labels(kind="retained")
        wait_until(lambda: bad._value.get() == 2, "both retained touches counted")
    with world.relay():  # a relay restart subscribes again: the broker replays the retained one
        connects = len(b.inbox.connects)
        b.restart()  # and a lamp reconnecting
        b.wait_connected(connects + 1)
        a.touch()
        assert_delivered(a, [b])
    assert touch_id("lamp-a", stream, 2) not in b.received()


def test_a_glows_age_is_how_long_the_broker_kept_it_not_the_lamps_clock() -> None:
    """The core's rule, without a network: a lamp whose clock is a year ahead shows a glow the
    broker delivered at once, and still drops one the broker kept longer than its limit."""
    looks = LookSettings(glow_max_age_seconds=3600.0)
    clock = ManualClock(start=dt.datetime(2031, 6, 1, 12, tzinfo=dt.UTC))  # a year ahead
    relay_now = epoch_ms(clock.local_now() - YEAR)

    def shown(*, waited_seconds: float | None) -> bool:
        core = LampCore(
            lamp_id="lamp-b",
            color=BLUE,
            looks=looks,
            quiet_hours=QuietHours(),
            local_time=clock.local_now,
            now=0.0,
        )
        core.handle(Connected(), 0.0)
        glow = GlowReceived(
            touch="lamp-a:1:1",
            sender="lamp-a",
            color=AMBER,
            at=relay_now,
            waited_seconds=waited_seconds,
        )
        core.handle(glow, 0.0)
        return max(core.frame(looks.glow.attack_seconds)) > 0.5

    assert shown(waited_seconds=0.0)
    assert shown(waited_seconds=3599.0)
    assert not shown(waited_seconds=3601.0)
    assert not shown(waited_seconds=None)  # no expiry: aged by the lamp's clock, a year off
