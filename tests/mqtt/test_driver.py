"""The driver's reconnect delays (mqtt/driver.py): jittered, as the lamp's (mqtt/backoff.py).

A broker restart drops every relay and lamp at once; delays without jitter bring them all back at
the same instants. The driver dials a real loopback port nobody listens on, so each attempt
really fails; the clock is the test's, advanced by the driver's own waits.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import select
import signal
import socket
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.broker import BrokerFixture
from tests.support.waiting import WAIT, wait_until
from touchlamp.mqtt.client import connect_properties
from touchlamp.mqtt.driver import MqttDriver


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def _delays(seed: int, attempts: int) -> list[float]:
    """The waits between ``attempts + 1`` failed connection attempts, by the test's clock."""
    now = [0.0]
    attempted_at: list[float] = []

    def idle(seconds: float) -> None:
        now[0] += seconds

    class _Attempts(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "trying again in" in record.getMessage():
                attempted_at.append(now[0])

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    driver = MqttDriver(
        client,
        min_delay=1.0,
        max_delay=8.0,
        idle=idle,
        clock=lambda: now[0],
        rng=random.Random(seed),
    )
    handler = _Attempts(logging.INFO)
    logger = logging.getLogger("touchlamp.mqtt.driver")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        driver.connect_async("127.0.0.1", _closed_port(), keepalive=30, clean_start=True)
        while len(attempted_at) <= attempts:
            driver.poll(1.0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        driver.close()
    return [later - earlier for earlier, later in itertools.pairwise(attempted_at)]


def test_reconnect_delays_are_jittered_within_a_doubling_ceiling() -> None:
    first = _delays(1, 4)
    second = _delays(2, 4)
    assert first != second  # two clients dropped together do not come back together
    for attempt, delay in enumerate(first):
        assert 1.0 <= delay <= min(8.0, 2.0 ** (attempt + 1))


def _poll_until(driver: MqttDriver, check: Callable[[], bool], what: str) -> None:
    def polled() -> bool:
        driver.poll(0.05)
        return check()

    wait_until(polled, what)


def test_acks_sent_just_before_close_reach_the_broker_though_messages_wait_unread(
    broker: BrokerFixture,
) -> None:
    """Closing a socket with unread bytes in it makes the kernel reset the connection (RST, not
    FIN), and a broker that had not read everything yet drops the rest: the client's last
    PUBACKs and its DISCONNECT. The broker then redelivers acknowledged messages to the next
    session. Found as a relay stopped mid-stream that forwarded a touch twice after its
    restart. Mosquitto is paused (SIGSTOP) while the client closes, so the broker reads its
    last packets only after the close, as it did by chance under load, and resumed after
    a moment — a close that lingers until the broker hangs up sees it do so."""
    lamp_id = "lamp-b"
    password = broker.add_lamp(lamp_id)
    glow_topic = broker.topics.glow(lamp_id)
    sender = broker.connect_relay()

    def connected_driver() -> tuple[MqttDriver, mqtt.Client, list[mqtt.MQTTMessage]]:
        received: list[mqtt.MQTTMessage] = []
        subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=lamp_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(lamp_id, password)
        client.on_message = lambda _c, _u, message: received.append(message)
        client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(glow_topic, qos=1)
        client.on_subscribe = lambda _c, _u, _m, _r, _p: subscribed.set()
        driver = MqttDriver(client, min_delay=0.1, max_delay=0.5)
        driver.connect_async(
            broker.host,
            broker.port,
            keepalive=30,
            clean_start=False,
            properties=connect_properties(session_expiry_seconds=3600),
        )
        _poll_until(driver, subscribed.is_set, "the subscription")
        return driver, client, received

    driver, client, received = connected_driver()
    for number in range(5):
        sender.publish(glow_topic, f"acked {number}")
    _poll_until(driver, lambda: len(received) == 5, "the first five glows")
    for number in range(20):
        sender.publish(glow_topic, f"unread {number}")  # the broker sends them; nobody reads
    sock = client.socket()
    assert sock is not None
    assert select.select([sock], [], [], WAIT)[0], "the unread glows never arrived"

    pid = broker.managed.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(0.5, os.kill, (pid, signal.SIGCONT))
    try:
        for message in received:
            client.ack(message.mid, message.qos)
        resume.start()
        driver.close()
    finally:
        resume.join()
        os.kill(pid, signal.SIGCONT)

    again, _client, redelivered = connected_driver()
    try:
        _poll_until(again, lambda: len(redelivered) >= 20, "the 20 unread glows again")
        again.poll(0.5)  # anything more the broker redelivers
        payloads = [message.payload.decode() for message in redelivered]
        assert [text for text in payloads if text.startswith("acked")] == []
        assert payloads == [f"unread {number}" for number in range(20)]
    finally:
        again.close()
