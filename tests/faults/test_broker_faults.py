"""Scenario 1: the broker restarted cleanly, killed with ``kill -9`` right after acknowledging a
touch or a glow (alone, or with the relay: a power cut of the host running both), and frozen with
SIGSTOP for longer than the keepalive — with touches in flight.

Rule: each touch a lamp sent reaches each peer's lamp core exactly once, in order per sender.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.faults.lamps import FaultLamp, assert_delivered
from tests.faults.world import FaultWorld, RelayProcess
from tests.support.proxy import Direction, FaultProxy, Packet, PacketType
from tests.support.waiting import wait_until
from touchlamp.protocol import touch_id

AMBER, BLUE = "#ff8c1a", "#3c78ff"


@contextmanager
def touching(lamp: FaultLamp, *, count: int, every: float) -> Iterator[threading.Event]:
    """``lamp`` touches ``count`` times, ``every`` seconds apart, in the background; the event
    is set when it is done (the block waits for it on exit)."""
    done = threading.Event()
    pace = threading.Event()  # never set: only paces the touches

    def run() -> None:
        for _ in range(count):
            lamp.touch()
            pace.wait(every)
        done.set()

    thread = threading.Thread(target=run, name=f"touching-{lamp.lamp_id}", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(120)


def test_a_clean_broker_restart_with_touches_in_flight_loses_nothing(
    world: FaultWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="touchlamp")
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    with world.relay():
        world.start(a, b)
        with touching(a, count=120, every=0.01), touching(b, count=60, every=0.02):
            a.inbox.wait(lambda _: len(b.received()) >= 20, "the first glows at lamp-b")
            world.broker.restart()
        a.touch()
        b.touch()
        assert_delivered(a, [b])
        assert_delivered(b, [a])
        assert a.link.outbox_stats().queued == 0
        assert b.link.outbox_stats().queued == 0
    # The relay says it lost the broker, and (as loudly: issue 15) that it got it back.
    relay_says = [r.getMessage() for r in caplog.records if r.name == "touchlamp.server.relay"]
    assert any("lost the broker connection" in line for line in relay_says), relay_says
    assert any("reconnected to the broker at" in line for line in relay_says), relay_says


def test_touches_sent_before_the_relay_resubscribes_after_a_broker_restart_wait_for_it(
    world: FaultWorld,
) -> None:
    """Mosquitto 2.0.11 does not keep shared subscriptions over a restart (measured: a
    persistent session comes back without its ``$share/…`` subscription). A lamp that reconnects
    before the relay does gets "no matching subscribers" for its touches."""
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    with world.relay():
        world.start(a, b)
        a.touch()
        b.wait_received(1, sender="lamp-a")
    world.broker.restart()  # the relay is down meanwhile (an upgrade, a host reboot)
    a.wait_connected(2)
    b.wait_connected(2)
    for _ in range(3):
        a.touch()
    with world.relay():
        assert_delivered(a, [b])


def test_glows_published_before_the_lamp_subscribes_again_reach_it_once(
    world: FaultWorld,
) -> None:
    """Lamp B's session is gone — a broker killed before its periodic save never knew it, or it
    expired — so the relay's glows for B are answered "no matching subscribers" (PUBACK 0x10)
    until B connects on a new session and subscribes again. They must reach B then, once, in
    order (issue 18; scenario 1d in RELIABILITY.md)."""
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    with world.relay() as relay:
        world.start(a)  # B has never connected: the broker knows no session of it
        for _ in range(3):
            a.touch()
        wait_until(
            lambda: relay.metrics.registry.get_sample_value("touchlamp_relay_glows_waiting") == 3,
            "the relay's three glows for lamp-b answered 'no matching subscribers' (or kept "
            "behind the first)",
        )
        world.start(b)
        assert_delivered(a, [b])
        a.touch()  # and what follows goes straight through
        assert_delivered(a, [b])


def wait_for_a_save(world: FaultWorld) -> None:
    """Until the broker next saves its database (about every 2 s): what it holds now is on disk
    then — e.g. an offline lamp's session, as it would be long before a crash."""
    log = world.broker.managed.layout.log_file
    start = log.stat().st_size

    def saved() -> bool:
        with log.open("rb") as text:
            text.seek(start)
            return b"Saving in-memory database" in text.read()

    wait_until(saved, "the broker to save its database")


class KillOnPuback:
    """A watcher on a proxy that SIGKILLs the broker the moment its PUBACK for the message it
    was armed for leaves it — before the client has read it (the client then gets it, as it
    would have). Armed for the next message on a ``…/{kind}`` topic whose payload contains
    ``marker``; fires once per arming. With ``relay``, that process is SIGKILLed right after
    the broker (a power cut of the host running both), before it can read anything more."""

    def __init__(
        self,
        world: FaultWorld,
        proxy: FaultProxy,
        *,
        kind: str,
        relay: RelayProcess | None = None,
    ) -> None:
        self._world = world
        self._kind = kind
        self._relay = relay
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._packet: int | None = None
        proxy.watch(self._watch)

    def arm(self, marker: str = "") -> None:
        with self._lock:
            self._marker, self._packet = marker.encode(), None

    def _watch(self, direction: Direction, packet: Packet) -> None:
        with self._lock:
            topic = packet.topic
            if direction is Direction.UP and topic is not None and topic.endswith(f"/{self._kind}"):
                if (
                    self._marker is not None
                    and self._packet is None
                    and self._marker in packet.body
                ):
                    self._packet = packet.packet_id
            elif (
                direction is Direction.DOWN
                and packet.kind == PacketType.PUBACK
                and self._packet is not None
                and packet.packet_id == self._packet
            ):
                self._marker = self._packet = None
                pid = self._world.broker.managed.pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                if self._relay is not None:
                    os.kill(self._relay.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "relay_running",
    [True, pytest.param(False, marks=pytest.mark.slow)],
    ids=["relay-up", "relay-down"],
)
def test_kill_9_right_after_the_broker_acknowledged_a_touch_loses_nothing(
    world: FaultWorld, relay_running: bool
) -> None:
    """Mosquitto sends the PUBACK about a millisecond before it writes the message to disk
    (broker/render.py): killed in that millisecond, it forgets a touch it acknowledged."""
    proxy = world.proxy()
    a = world.lamp("lamp-a", color=AMBER, via=proxy)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    killer = KillOnPuback(world, proxy, kind="touch")
    rounds = 3
    relay = world.relay_process()
    world.start(a, b)
    if not relay_running:
        relay.stop()
    for round_ in range(rounds):
        killer.arm()
        a.touch()
        wait_until(lambda: not world.broker.managed.running, "the broker killed at the PUBACK")
        world.broker.kill9()  # reaps it
        world.broker.managed.start()
        a.wait_connected(round_ + 2)
    if not relay_running:
        relay.start()
    a.touch()
    assert_delivered(a, [b])


@pytest.mark.slow
def test_kill_9_right_after_the_broker_acknowledged_a_glow_loses_nothing(
    world: FaultWorld,
) -> None:
    """The same millisecond on the relay's side: lamp B is off, the relay's glow for it is
    acknowledged and the broker dies before saving it (and the relay's PUBACK of the touch).
    The restarted broker redelivers the touch (DUP) and the relay must forward it again."""
    proxy = world.proxy()
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    killer = KillOnPuback(world, proxy, kind="glow")
    with world.relay(via=proxy):
        world.start(a, b)
        b.stop()
        wait_for_a_save(world)  # lamp B's offline session, where its glows are to wait
        for round_ in range(3):
            stats = a.link.outbox_stats()
            killer.arm(touch_id("lamp-a", stats.stream, stats.next_seq))  # this touch's glow
            a.touch()
            wait_until(lambda: not world.broker.managed.running, "the broker killed at the PUBACK")
            world.broker.kill9()
            world.broker.managed.start()
            a.wait_connected(round_ + 2)
        b.restart()
        assert_delivered(a, [b])


@pytest.mark.slow
def test_a_power_cut_of_broker_and_relay_right_after_a_glow_was_acknowledged_loses_nothing(
    world: FaultWorld,
) -> None:
    """As above, but the relay runs on the broker's host and the power cut takes it too: both
    die by SIGKILL the moment the broker's PUBACK for the relay's glow leaves it, and both are
    restarted. The broker never saved the touch, so nothing comes back with DUP; the lamp sends
    it again, and the relay (a new process) must forward that repeat although its store says
    the touch was forwarded."""
    proxy = world.proxy()
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    relay = world.relay_process(via=proxy)
    killer = KillOnPuback(world, proxy, kind="glow", relay=relay)
    world.start(a, b)
    b.stop()
    wait_for_a_save(world)  # lamp B's offline session, where its glows are to wait
    for round_ in range(2):
        stats = a.link.outbox_stats()
        killer.arm(touch_id("lamp-a", stats.stream, stats.next_seq))  # this touch's glow
        a.touch()
        wait_until(
            lambda: not (world.broker.managed.running or relay.running),
            "the broker and the relay killed at the PUBACK",
        )
        world.broker.kill9()
        relay.kill9()  # reaps it
        world.broker.managed.start()
        relay.start()
        a.wait_connected(round_ + 2)
    b.restart()
    assert_delivered(a, [b])


@pytest.mark.slow
def test_a_broker_frozen_longer_than_the_keepalive_loses_nothing(
    world: FaultWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: the broker's sockets stay open (the kernel even completes new TCP connections)
    but nothing answers. paho notices after up to two keepalives (a PINGREQ, then no PINGRESP):
    lamps (keepalive 2 s) and the relay (5 s) give up on it; touches made meanwhile wait in the
    outbox. Then SIGCONT."""
    a = world.lamp("lamp-a", color=AMBER, keepalive_seconds=2, connect_timeout_seconds=2.0)
    b = world.lamp("lamp-b", color=BLUE, keepalive_seconds=2, connect_timeout_seconds=2.0)
    world.pair(a, b)
    caplog.set_level(logging.WARNING, logger="touchlamp")
    with world.relay(mqtt={"keepalive_seconds": 5}):
        world.start(a, b)
        a.touch()
        b.wait_received(1, sender="lamp-a")
        pid = world.broker.managed.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                a.touch()
                b.touch()
            # Longer than two keepalives of the relay: every client has given up by now.
            threading.Event().wait(11.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        a.wait_connected(2)
        b.wait_connected(2)
        a.touch()
        b.touch()
        assert_delivered(a, [b])
        assert_delivered(b, [a])
        wait_until(
            lambda: all(lamp.online for lamp in world.store.list_lamps()),
            "the relay to see both lamps online again",
        )
    noticed = {r.name for r in caplog.records if "lost the broker" in r.getMessage()}
    assert noticed >= {"touchlamp.device.link", "touchlamp.server.relay"}, noticed
