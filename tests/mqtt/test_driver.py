"""The driver's reconnect delays (mqtt/driver.py): jittered, as the lamp's (mqtt/backoff.py).

A broker restart drops every relay and lamp at once; delays without jitter bring them all back at
the same instants. The driver dials a real loopback port nobody listens on, so each attempt
really fails; the clock is the test's, advanced by the driver's own waits.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

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
