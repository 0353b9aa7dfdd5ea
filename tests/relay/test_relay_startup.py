"""A relay starting with many lamps forwards touches before its start-up catch-up is done.

At start the relay re-publishes every lamp's retained group state and reads every lamp's
retained availability. With 10,000 lamps that took ~13 ms a lamp before the first touch went
through (issue 16); it is now done a slice at a time between touches (server/catch_up.py).
Real broker, real SQLite store, the relay in this process.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.relay.live import Site, running_relay
from tests.support.broker import BrokerFixture
from tests.support.waiting import WAIT
from touchlamp.protocol import Availability

_FILLERS = 400  # lamps whose group states come before the receiving lamp's (sorted by id)


class _Arrivals:
    """Lamp ``lamp_id``'s glows and live (not retained) group states, in arrival order."""

    def __init__(self, broker: BrokerFixture, lamp_id: str, password: str) -> None:
        self.kinds: list[str] = []
        self._changed = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=lamp_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self._client.username_pw_set(lamp_id, password)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.on_connect = lambda client, *_args: client.subscribe(
            [(broker.topics.glow(lamp_id), 1), (broker.topics.group(lamp_id), 1)]
        )
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert subscribed.wait(WAIT), f"{lamp_id} did not subscribe"

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            return  # the state retained before: not what this start published
        with self._changed:
            self.kinds.append(msg.topic.rsplit("/", 1)[-1])
            self._changed.notify_all()

    def wait_for(self, kinds: set[str]) -> list[str]:
        with self._changed:
            arrived = self._changed.wait_for(lambda: kinds <= set(self.kinds), timeout=WAIT * 3)
            assert arrived, f"waited for {kinds}, got {self.kinds}"
            return list(self.kinds)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def test_a_restarted_relay_forwards_a_waiting_touch_before_republishing_every_group_state(
    site: Site, broker: BrokerFixture
) -> None:
    for index in range(_FILLERS):
        site.store.add_lamp(f"filler-{index:04d}", name="filler", color="#123456", now_ms=0)
    lamp_a = site.lamp("lamp-a")
    password_b = broker.add_lamp("zz-lamp-b")
    site.store.add_lamp("zz-lamp-b", name="b", color="#654321", now_ms=0)
    site.store.create_group(["lamp-a", "zz-lamp-b"], name="home", group_id="g-home")
    with running_relay(site):
        lamp_a.announce(Availability.ONLINE)  # retained: read again at the next start
        lamp_a.wait_group_state(
            lambda state: any(member.id == "lamp-a" and member.online for member in state.members),
            "lamp-a online",
        )
    arrivals = _Arrivals(broker, "zz-lamp-b", password_b)
    try:
        lamp_a.touch(1)  # waits in the stopped relay's session
        with running_relay(site):
            kinds = arrivals.wait_for({"glow", "group"})
    finally:
        arrivals.close()
    # zz-lamp-b's state is in the last slice: the touch waiting at start went out before it.
    assert kinds.index("glow") < kinds.index("group"), kinds
