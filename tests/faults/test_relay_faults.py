"""Scenario 2: the relay killed while forwarding, killed between recording a touch and getting
its glows out, killed in the middle of a pairing change; two relays on the shared subscription,
one killed. The relay runs as ``touchlamp relay run`` in a child process and dies by SIGKILL.

Rule: each touch a lamp sent reaches each peer's lamp core exactly once (in order per sender
with one relay), and the relay, restarted, carries on.
"""

from __future__ import annotations

import threading

import pytest

from tests.faults.lamps import FaultLamp, assert_delivered
from tests.faults.test_broker_faults import touching
from tests.faults.world import FaultWorld
from tests.support.proxy import Direction, Packet
from tests.support.waiting import WAIT, wait_until
from touchlamp.device.agent import LampAgent
from touchlamp.protocol import PairAction, PairRequest
from touchlamp.server.confirmations import ConnectionEnds

AMBER, BLUE = "#ff8c1a", "#3c78ff"


def _last_touch_ms(world: FaultWorld, lamp: FaultLamp) -> int:
    stored = world.store.get_lamp(lamp.lamp_id)
    assert stored is not None
    return stored.last_touch_ms or 0


@pytest.mark.slow
def test_a_relay_killed_while_forwarding_loses_nothing(world: FaultWorld) -> None:
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    relay = world.relay_process()
    world.start(a, b)
    with touching(a, count=240, every=0.01) as done, touching(b, count=120, every=0.02):
        for kill in range(1, 4):
            b.wait_received(40 * kill, sender="lamp-a")
            relay.kill9()
            relay.start()
        assert done.wait(WAIT)
    a.touch()
    b.touch()
    assert_delivered(a, [b])
    assert_delivered(b, [a])


def test_a_relay_killed_after_recording_a_touch_but_before_its_glows_left_sends_them(
    world: FaultWorld,
) -> None:
    """The relay committed the touch's de-duplication record, handed the glows (and the touch's
    PUBACK) to its socket, and died before the bytes left: the proxy holds them and throws them
    away. The broker redelivers the unacknowledged touch (DUP) to the restarted relay — which
    must forward it, although its record says "seen"."""
    proxy = world.proxy()
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    relay = world.relay_process(via=proxy)
    world.start(a, b)
    a.touch()
    b.wait_received(1, sender="lamp-a")
    before = _last_touch_ms(world, a)

    held: list[Packet] = []  # what the relay sent while paused: the proxy holds exactly that
    glow_topic = world.broker.topics.glow("lamp-b")
    proxy.watch(lambda way, packet: held.append(packet) if way is Direction.UP else None)
    proxy.pause(Direction.UP)  # what the relay sends stays in the proxy
    touch = a.touch().encode()
    wait_until(lambda: _last_touch_ms(world, a) > before, "the relay to record the touch")
    wait_until(
        lambda: any(p.topic == glow_topic and touch in p.body for p in list(held)),
        "the relay's glow for the touch to be held in the proxy",
    )
    relay.kill9()
    proxy.discard_held()
    proxy.resume()
    relay.start()

    a.touch()
    assert_delivered(a, [b])


def test_a_relay_killed_in_the_middle_of_a_pairing_change(world: FaultWorld) -> None:
    """Lamp C joins A's group by code; the relay commits the change and dies before the answer
    and the new group states leave it. Restarted, it republishes every group state, so both
    lamps learn they are paired, and touches flow both ways."""
    proxy = world.proxy()
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    c = world.lamp("lamp-c", color="#33cc55")
    world.pair(a, b)
    relay = world.relay_process(via=proxy)
    world.start(a, b, c)
    created = a.link.request(PairRequest(action=PairAction.CREATE))
    assert created.ok, created
    assert created.code is not None

    proxy.pause(Direction.UP)
    c.link.send_request(PairRequest(action=PairAction.JOIN, code=created.code))
    wait_until(
        lambda: (group := world.store.group_of("lamp-c")) is not None and len(group.members) == 3,
        "the relay to commit the join",
    )
    relay.kill9()
    proxy.discard_held()
    proxy.resume()
    relay.start()

    for lamp, partners in ((a, {"lamp-b", "lamp-c"}), (c, {"lamp-a", "lamp-b"})):
        assert lamp.agent is not None
        agent = lamp.agent

        def told(agent: LampAgent = agent, partners: set[str] = partners) -> bool:
            return set(agent.partners) == partners

        wait_until(told, f"{lamp.lamp_id} told its new group")
    a.touch()
    c.touch()
    assert_delivered(a, [b, c])
    assert_delivered(c, [a, b])


@pytest.mark.slow
def test_two_relays_one_killed_lose_nothing_once_it_is_back(world: FaultWorld) -> None:
    """Two relays share the touches ($share). Mosquitto 2.0.11 keeps giving the killed relay's
    persistent session its turn: those touches wait there until it is back (systemd restarts
    it). Order across the two relays is not kept (MQTT shared subscriptions do not promise it)."""
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    first = world.relay_process(client_id="relay-1")
    second = world.relay_process(client_id="relay-2")
    world.start(a, b)
    with touching(a, count=100, every=0.01) as done:
        b.inbox.wait(lambda _: len(b.received()) >= 20, "the first glows")
        first.kill9()
        assert done.wait(WAIT)
    # relay-2 forwards its share; relay-1's share waits in its session. Both counts are read
    # once relay-2 has handled every touch it was given (its received counter stands still).
    handled = threading.Event()
    seen = [-1.0]

    def settled() -> bool:
        now = second.metrics()["touchlamp_relay_touches_received_total"]
        steady, seen[0] = now == seen[0], now
        handled.wait(0.3)
        return steady

    wait_until(settled, "relay-2 to handle its share")
    held_back = len(a.touch_ids()) - len(b.received(sender="lamp-a"))
    print(f"\ntwo relays: {held_back} of {len(a.touch_ids())} touches waited for relay-1")
    first.start()
    assert_delivered(a, [b], ordered=False)
    assert held_back > 0, "expected relay-1's session to hold its share while it was down"


def test_a_repeat_is_forwarded_again_only_while_its_glows_may_be_lost() -> None:
    """``ConnectionEnds`` on its own, with a hand-moved clock: the rule the relay applies to a
    repeated touch, given when the store recorded it (server/confirmations.py)."""
    now = [1_000.0]  # seconds, like time.time
    ends = ConnectionEnds(window_seconds=60.0, clock=lambda: now[0], capacity=3)
    assert not ends.may_have_lost(999_000)  # no connection has ended: a plain duplicate
    ends.ended()  # e.g. the relay's start: at 1,000,000 ms
    assert ends.may_have_lost(1_000_000)  # recorded as it ended
    assert ends.may_have_lost(940_001)  # recorded just under the window before
    assert not ends.may_have_lost(940_000)  # a whole window before: saved or noticed by then
    assert not ends.may_have_lost(1_000_001)  # recorded after: went out on a later connection
    now[0] = 1_500.0
    ends.ended()
    assert ends.may_have_lost(1_499_000)
    assert not ends.may_have_lost(1_200_000)  # between the two ends, a window from both
    ends.ended_at(1_200_030)  # the previous process was alive then (its last recorded touch)
    assert ends.may_have_lost(1_200_000)
    now[0] = 2_000.0
    ends.ended()  # bounded: the oldest end is forgotten first
    assert len(ends) == 3
    assert not ends.may_have_lost(1_000_000)
    assert ends.may_have_lost(1_200_000)
