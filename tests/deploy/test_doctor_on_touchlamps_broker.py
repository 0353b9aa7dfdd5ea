"""Doctor on touchlamp's own broker configuration (the shared ``broker`` fixture), where a lamp's
login is bound to its client id: doctor must check a stopped lamp's and a stopped relay's login
under their own client ids without taking the messages queued in their sessions."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.doctor_support import env_file, report
from tests.relay.lamps import Endpoint, TestLamp
from tests.support.broker import BrokerFixture
from tests.support.relay import running_relay
from tests.support.waiting import wait_until
from touchlamp.config.relay import RelaySettings
from touchlamp.doctor import Probes, check_device, check_relay
from touchlamp.server.store import open_store


def relay_settings(broker: BrokerFixture) -> RelaySettings:
    return RelaySettings(
        mqtt={
            "host": broker.host,
            "port": broker.port,
            "username": broker.relay_username,
            "password": broker.relay_password,
            "topic_root": broker.topics.root,
            "reconnect_min_seconds": 0.1,
            "reconnect_max_seconds": 1.0,
        },
    )


def test_stopped_lamp_and_relay_keep_what_was_queued_for_them(
    broker: BrokerFixture, tmp_path: Path, pi: Probes
) -> None:
    store = open_store(tmp_path / "relay.sqlite3")
    endpoint = Endpoint(host=broker.host, port=broker.port, root=broker.topics.root)
    passwords = {lamp_id: broker.add_lamp(lamp_id) for lamp_id in ("lamp-a", "lamp-b")}
    for lamp_id in passwords:
        store.add_lamp(lamp_id, name=lamp_id, color="#336699", now_ms=0)
    store.create_group(list(passwords), name="home", group_id="g-home")
    sender = TestLamp(endpoint, "lamp-a", passwords["lamp-a"])
    lamp = TestLamp(endpoint, "lamp-b", passwords["lamp-b"])
    sender.connect()
    lamp.connect()
    lamp.disconnect()  # lamp-b is off: its session collects glows
    lamp_file = env_file(
        tmp_path / "device.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": "lamp-b",
            "TOUCHLAMP_DEVICE_MQTT__HOST": broker.host,
            "TOUCHLAMP_DEVICE_MQTT__PORT": broker.port,
            "TOUCHLAMP_DEVICE_MQTT__PASSWORD": passwords["lamp-b"],
            "TOUCHLAMP_DEVICE_MQTT__TOPIC_ROOT": broker.topics.root,
            "TOUCHLAMP_DEVICE_STATE_DIR": tmp_path / "lamp-state",
        },
    )
    relay_file = env_file(
        tmp_path / "relay.env",
        {
            "TOUCHLAMP_RELAY_MQTT__HOST": broker.host,
            "TOUCHLAMP_RELAY_MQTT__PORT": broker.port,
            "TOUCHLAMP_RELAY_MQTT__USERNAME": broker.relay_username,
            "TOUCHLAMP_RELAY_MQTT__PASSWORD": broker.relay_password,
            "TOUCHLAMP_RELAY_STATE_DIR": tmp_path / "relay-state",
        },
    )
    try:
        with running_relay(relay_settings(broker), store):
            sender.touch(1)
            wait_until(
                lambda: store.get_lamp("lamp-a").last_touch_ms,  # type: ignore[union-attr]
                "the relay to forward touch 1",
            )
            lamp_lines = report(check_device(lamp_file, probes=pi))
        sender.touch(2)  # the relay is stopped: its session keeps the touch
        relay_lines = report(check_relay(relay_file, probes=pi))
        with running_relay(relay_settings(broker), store):
            lamp.connect()
            glows = lamp.wait_glows(2)
    finally:
        sender.disconnect()
        lamp.disconnect()
        store.close()
    assert "OK   the broker accepted user lamp-b" in lamp_lines
    assert "OK   paired: group home with lamp-a" in lamp_lines
    assert "OK   the broker accepted the relay user relay" in relay_lines
    assert [glow.touch for glow in glows] == [
        f"lamp-a:{sender.stream}:1",
        f"lamp-a:{sender.stream}:2",
    ]
