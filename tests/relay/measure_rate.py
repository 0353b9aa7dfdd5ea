"""How many touches per second one relay forwards with zero loss (a quick measurement, not a test).

    .venv/bin/python -m tests.relay.measure_rate [--touches 20000] [--senders 4] [--store PATH|DSN]

Starts a Mosquitto on a free loopback port, a relay in this process (its own worker thread, a
real store: SQLite in a temporary directory unless ``--store`` names another), ``--senders``
lamps each paired with one receiving lamp, then has every sender publish its share of touches
(QoS 1) as fast as paho takes them. It counts the glows the receivers get and reports touches/s
from the first publish to the last glow, and checks that every touch arrived exactly once.
Issue 7's benchmarks go further (latency percentiles, several relays).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.device.link_support import ProvisionalBroker
from tests.relay.live import Site
from touchlamp.protocol import Topics, Touch, decode_glow, encode
from touchlamp.server.relay import Relay
from touchlamp.server.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touches", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--store", help="a SQLite path or postgresql:// DSN (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        broker = ProvisionalBroker(Path(directory) / "broker")
        broker.start()
        try:
            store = open_store(args.store or Path(directory) / "relay.sqlite3")
            try:
                measure(Site(broker, store), touches=args.touches, senders=args.senders)
            finally:
                store.close()
        finally:
            broker.stop()


def _client(site: Site, lamp_id: str, password: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=lamp_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(lamp_id, password)
    client.max_inflight_messages_set(1000)
    client.connect(site.broker.host, site.broker.port)
    return client


def measure(site: Site, *, touches: int, senders: int) -> None:
    topics = Topics(site.root)
    per_sender = touches // senders
    expected = per_sender * senders
    received: set[str] = set()
    duplicates = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_glow(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal duplicates
        glow = decode_glow(msg.topic, msg.payload)
        with lock:
            if glow.touch in received:
                duplicates += 1
            received.add(glow.touch)
            if len(received) == expected:
                done.set()

    pairs = []
    for index in range(senders):
        sender_id, receiver_id = f"send-{index}", f"recv-{index}"
        sender_pw, receiver_pw = site.broker.add_lamp(sender_id), site.broker.add_lamp(receiver_id)
        for lamp_id in (sender_id, receiver_id):
            site.store.add_lamp(lamp_id, name=lamp_id, color="#ffffff", now_ms=0)
        site.store.create_group([sender_id, receiver_id], name="bench", group_id=f"g-{index}")
        receiver = _client(site, receiver_id, receiver_pw)
        receiver.on_message = on_glow
        receiver.subscribe(topics.glow(receiver_id), qos=1)
        receiver.loop_start()
        sender = _client(site, sender_id, sender_pw)
        sender.loop_start()
        pairs.append((sender_id, sender, receiver))

    settings = site.settings(
        rate_limit={"per_second": 1e9, "burst": 10**9}, forwarding={"mutual_window_seconds": 0}
    )
    relay = Relay(settings=settings, store=site.store)
    relay.start()
    assert relay.wait_connected(30)

    def send(sender_id: str, client: mqtt.Client) -> None:
        topic = topics.touch(sender_id)
        for seq in range(per_sender):
            payload = encode(Touch(seq=seq, stream=1, color="#ffffff", ts=1))
            client.publish(topic, payload, qos=1)

    start = time.perf_counter()
    threads = [
        threading.Thread(target=send, args=(sender_id, client)) for sender_id, client, _ in pairs
    ]
    for thread in threads:
        thread.start()
    finished = done.wait(timeout=600)
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join()
    relay.stop()
    for _, sender, receiver in pairs:
        sender.disconnect()
        sender.loop_stop()
        receiver.disconnect()
        receiver.loop_stop()
    print(
        f"{len(received)}/{expected} touches forwarded ({duplicates} duplicates) in "
        f"{elapsed:.2f} s: {len(received) / elapsed:,.0f} touches/s = glows/s "
        f"({senders} sending lamps, store {type(site.store).__name__})"
    )
    if not finished:
        raise SystemExit("lost touches: not every glow arrived within 10 minutes")


if __name__ == "__main__":
    main()
