"""The lamp in Home Assistant, against real brokers: the lamps' own (with the relay) and a second
Mosquitto as the home's broker (``tests.support.home_broker``), watched by an MQTT client
standing in for Home Assistant. The lamps are the simulator's (the wiring ``touchlamp sim`` uses).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e.world import BrokerLike, World, same_hue
from tests.support.broker import MqttProbe, Received
from tests.support.home_broker import HomeBroker
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until
from touchlamp.broker.certs import make_certificates
from touchlamp.cli import main
from touchlamp.config.device import DeviceSettings, HomeAssistantSettings
from touchlamp.device.homeassistant_discovery import HomeTopics
from touchlamp.device.homeassistant_removal import RECORD_FILE, remove_from_home_assistant
from touchlamp.device.sim import SimulatedLamp, Simulator

AMBER = "#ff8c1a"
BLUE = "#3c78ff"
HA_USER, HA_PASSWORD = "homeassistant", "home-secret"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[HomeBroker]:
    with HomeBroker(tmp_path / "home-broker", users={HA_USER: HA_PASSWORD}) as broker:
        yield broker


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


def home_settings(
    host: str, port: int, *, password: str = HA_PASSWORD, **extra: object
) -> HomeAssistantSettings:
    return HomeAssistantSettings(
        host=host,
        port=port,
        username=HA_USER,
        password=SecretStr(password),
        reconnect_min_seconds=0.1,
        reconnect_max_seconds=0.5,
        connect_timeout_seconds=1.0,
        min_touch_interval_seconds=0.0,
        **extra,
    )


def with_home(settings: DeviceSettings, home: HomeAssistantSettings) -> DeviceSettings:
    return settings.model_copy(update={"homeassistant": home})


class HomeAssistantStandIn:
    """A client in Home Assistant's place, subscribed to discovery and the lamps' topics; it
    keeps everything it received, so checks may look back."""

    def __init__(self, home: HomeBroker) -> None:
        self.probe = MqttProbe(
            host=home.host, port=home.port, username=HA_USER, password=HA_PASSWORD, client_id="ha"
        )
        self.probe.connect()
        self.probe.subscribe("homeassistant/#")
        self.probe.subscribe("touchlamp/#")
        self.log: list[Received] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.probe.publish(topic, payload)

    def latest(self, topic: str, payload: bytes | None = None) -> Received:
        """Wait until a message on ``topic`` (with ``payload`` if given) has arrived; the last."""

        def matching() -> list[Received]:
            pending = self.probe.pending()
            if pending:
                self.log += self.probe.messages(pending)
            return [
                m
                for m in self.log
                if m.topic == topic and (payload is None or m.payload == payload)
            ]

        wait_until(lambda: bool(matching()), f"{topic!r} {payload!r} on the home broker")
        return matching()[-1]

    def close(self) -> None:
        self.probe.close()


@pytest.fixture
def ha(home: HomeBroker) -> Iterator[HomeAssistantStandIn]:
    stand_in = HomeAssistantStandIn(home)
    yield stand_in
    stand_in.close()


def running(simulator: Simulator, lamp_id: str) -> SimulatedLamp:
    lamp = simulator.lamp(lamp_id)
    wait_until(lambda: lamp.agent.online, f"{lamp_id} online")
    return lamp


def test_a_lamp_appears_in_home_assistant_and_its_button_touches_the_partner(
    world: World, home: HomeBroker, ha: HomeAssistantStandIn
) -> None:
    config = home_settings(home.host, home.port)
    a = with_home(world.lamp("lamp-a", color=AMBER, name="Anna"), config)
    b = world.lamp("lamp-b", color=BLUE, name="Ben")
    world.pair("lamp-a", "lamp-b")
    topics = HomeTopics("lamp-a")
    with world.relay(), world.simulator(a, b) as simulator:
        lamp_a, lamp_b = running(simulator, "lamp-a"), running(simulator, "lamp-b")

        # Discovery: retained, one device, the member's presence among the entities.
        presence = "homeassistant/binary_sensor/touchlamp_lamp-a/member_lamp-b_online/config"
        sensor = json.loads(ha.latest(presence).payload)
        assert sensor["name"] == "Ben online"
        assert sensor["device"]["identifiers"] == ["touchlamp_lamp-a"]
        ha.latest(topics.member_online("lamp-b"), b"ON")
        ha.latest(topics.availability, b"online")

        # Retained: a late subscriber (Home Assistant restarting) still finds every config.
        late = MqttProbe(
            host=home.host, port=home.port, username=HA_USER, password=HA_PASSWORD, client_id="l"
        )
        try:
            late.connect()
            late.subscribe("homeassistant/+/touchlamp_lamp-a/+/config")
            configs = late.messages(5)
            assert all(m.retain for m in configs)
            seen = {m.topic.split("/")[1] for m in configs}
            assert seen == {"event", "button", "switch", "sensor", "binary_sensor"}
        finally:
            late.close()

        # The button: the paired lamp glows in lamp A's colour.
        ha.publish(topics.send_touch, b"PRESS")
        wait_until(
            lambda: same_hue(lamp_b.led(), AMBER, gamma=2.2) and max(lamp_b.led()) > 0.5,
            "lamp B glowing in A's amber after the button was pressed",
        )

        # A touch received: Home Assistant's event, with who and which colour.
        lamp_b.agent.touch()
        event = json.loads(ha.latest(topics.touch_received).payload)
        assert event["event_type"] in ("touch", "mutual")  # mutual: B answered within the window
        assert (event["from"], event["from_lamp"], event["color"]) == ("Ben", "lamp-b", BLUE)
        assert event["shown"] is True

        # The quiet switch: its state follows the lamp, and the lamp is quiet.
        ha.publish(topics.quiet_set, b"ON")
        ha.latest(topics.quiet, b"ON")
        assert lamp_a.agent.status().quiet_now

        # Presence: lamp B goes away, its binary sensor turns off.
        simulator.lamp("lamp-b").stop()
        ha.latest(topics.member_online("lamp-b"), b"OFF")


def test_bad_commands_are_counted_and_do_nothing(
    world: World, home: HomeBroker, ha: HomeAssistantStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    a = with_home(world.lamp("lamp-a", color=AMBER), home_settings(home.host, home.port))
    b = world.lamp("lamp-b", color=BLUE)
    world.pair("lamp-a", "lamp-b")
    topics = HomeTopics("lamp-a")
    # A retained PRESS would touch the partner at every reconnect of the lamp: refused.
    info = ha.probe._client.publish(topics.send_touch, b"PRESS", qos=1, retain=True)
    info.wait_for_publish(5)
    with world.relay(), world.simulator(a, b) as simulator:
        lamp_a, lamp_b = running(simulator, "lamp-a"), running(simulator, "lamp-b")
        bridge = lamp_a.home
        assert bridge is not None
        ha.latest(topics.availability, b"online")
        wait_until(lambda: bridge.bad_commands == 1, "the retained PRESS refused")

        ha.publish(topics.send_touch, b"press")  # not the documented payload
        ha.publish(topics.quiet_set, b"maybe")
        ha.publish(topics.base + "/quiet/set/extra", b"ON")  # not subscribed: never arrives
        wait_until(lambda: bridge.bad_commands == 3, "two more bad commands counted")
        assert caplog.text.count("ignored") == 1  # logged once, then only counted
        assert not lamp_a.agent.status().quiet_now
        assert max(lamp_b.led()) == 0.0  # nothing reached the partner


def test_a_black_holed_home_broker_leaves_touches_and_glows_working(
    world: World, home: HomeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = FaultProxy(target_port=home.port)
    proxy.blackhole()  # takes the TCP connection, never answers
    try:
        config = home_settings("127.0.0.1", proxy.port)
        a = with_home(world.lamp("lamp-a", color=AMBER), config)
        b = with_home(world.lamp("lamp-b", color=BLUE), config)
        world.pair("lamp-a", "lamp-b")
        with world.relay(), world.simulator(a, b) as simulator:
            lamp_a, lamp_b = running(simulator, "lamp-a"), running(simulator, "lamp-b")
            assert proxy.wait_accepted(2, timeout=10.0)  # both bridges are stuck in there

            lamp_a.agent.touch()
            wait_until(
                lambda: same_hue(lamp_b.led(), AMBER, gamma=2.2) and max(lamp_b.led()) > 0.5,
                "B glowing while both lamps' home broker is black-holed",
            )
            lamp_b.agent.touch()
            wait_until(lambda: max(lamp_a.led()) > 0.5, "A glowing")
            for lamp in (lamp_a, lamp_b):
                home_link = lamp.home
                assert home_link is not None
                assert not home_link.connected
                wait_until(lambda link=home_link: link.attempts >= 3, "three attempts")  # type: ignore[misc]
            # Warned once per lamp for the outage, not at every attempt.
            warnings = [r for r in caplog.records if "cannot reach the home broker" in r.message]
            assert len([r for r in warnings if r.levelname == "WARNING"]) == 2
    finally:
        proxy.close()


def test_a_refused_login_leaves_the_lamp_working_and_says_what_to_fix(
    world: World, home: HomeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    config = home_settings(home.host, home.port, password="wrong")
    a = with_home(world.lamp("lamp-a", color=AMBER), config)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair("lamp-a", "lamp-b")
    with world.relay(), world.simulator(a, b) as simulator:
        lamp_a, lamp_b = running(simulator, "lamp-a"), running(simulator, "lamp-b")
        wait_until(lambda: "refused the login" in caplog.text, "the refusal logged")
        lamp_a.agent.touch()
        wait_until(lambda: max(lamp_b.led()) > 0.5, "B glowing")
        assert "TOUCHLAMP_DEVICE_HOMEASSISTANT__PASSWORD" in caplog.text
        assert caplog.text.count("refused the login") == 1  # retried, not repeated


def test_disabling_the_integration_removes_the_entities(
    world: World, home: HomeBroker, ha: HomeAssistantStandIn
) -> None:
    config = home_settings(home.host, home.port)
    a = with_home(world.lamp("lamp-a", color=AMBER, name="Anna"), config)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair("lamp-a", "lamp-b")
    topics = HomeTopics("lamp-a")
    with world.relay():
        with world.simulator(a, b) as simulator:
            running(simulator, "lamp-a")
            running(simulator, "lamp-b")
            ha.latest(topics.member_online("lamp-b"), b"ON")
        assert (a.state_dir / RECORD_FILE).exists()
        ha.latest(topics.availability, b"offline")  # stopped: unavailable, entities kept

        disabled = with_home(a, config.model_copy(update={"enabled": False}))
        with world.simulator(disabled, b):
            wait_until(lambda: not (a.state_dir / RECORD_FILE).exists(), "the record removed")

    # What a Home Assistant starting now would find: no config of lamp A, no state.
    late = MqttProbe(
        host=home.host, port=home.port, username=HA_USER, password=HA_PASSWORD, client_id="late"
    )
    try:
        late.connect()
        late.subscribe("homeassistant/#")
        late.subscribe("touchlamp/#")
        late.publish("marker", b"end")
        late.subscribe("marker")
        late.publish("marker", b"end")
        arrived = late.messages_until(lambda m: m.topic == "marker")
        assert [m.topic for m in arrived] == ["marker"], [m.topic for m in arrived]
    finally:
        late.close()


def test_removal_says_what_to_do_when_the_home_broker_is_away(tmp_path: Path) -> None:
    proxy = FaultProxy(target_port=1)
    proxy.refuse()
    try:
        settings = HomeAssistantSettings(host="127.0.0.1", port=proxy.port)
        with pytest.raises(Exception, match="HOMEASSISTANT__HOST") as caught:
            remove_from_home_assistant(settings, lamp_id="lamp-a", state_dir=tmp_path, timeout=3)
        assert "still there" in str(caught.value)
    finally:
        proxy.close()


def test_device_uninstall_removes_the_entities(
    world: World,
    home: HomeBroker,
    ha: HomeAssistantStandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "root"
    config = home_settings(home.host, home.port)
    a = with_home(world.lamp("lamp-a", color=AMBER), config)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair("lamp-a", "lamp-b")
    topics = HomeTopics("lamp-a")
    with world.relay(), world.simulator(a, b) as simulator:
        running(simulator, "lamp-a")
        ha.latest(topics.member_online("lamp-b"), b"ON")
    # The installed lamp's settings file, as `device enroll` and the owner would leave it.
    settings_file = root / "etc/touchlamp/device.env"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        f"TOUCHLAMP_DEVICE_STATE_DIR={a.state_dir}\n"
        f"TOUCHLAMP_DEVICE_HOMEASSISTANT__HOST={home.host}\n"
        f"TOUCHLAMP_DEVICE_HOMEASSISTANT__PORT={home.port}\n"
        f"TOUCHLAMP_DEVICE_HOMEASSISTANT__USERNAME={HA_USER}\n"
        f"TOUCHLAMP_DEVICE_HOMEASSISTANT__PASSWORD={HA_PASSWORD}\n"
    )

    assert main(["device", "uninstall", "--root", str(root)]) == 0

    assert "removed the lamp's Home Assistant entities" in capsys.readouterr().out
    presence = "homeassistant/binary_sensor/touchlamp_lamp-a/member_lamp-b_online/config"
    for topic in (presence, topics.config("button", "send_touch"), topics.availability):
        assert ha.latest(topic, b"").payload == b""  # the empty retained message deletes it
    assert not (a.state_dir / RECORD_FILE).exists()


def test_a_bad_homeassistant_address_on_the_command_line_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--no-browser", "--homeassistant", "http://ha.local:1883"])
    assert exited.value.code == 2
    assert "mqtt://[USER:PASSWORD@]HOST:PORT" in capsys.readouterr().err


def test_an_unreadable_home_broker_ca_stops_the_lamp_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_certificate = tmp_path / "home-ca.crt"
    not_a_certificate.write_text("not a certificate\n")
    env_file = tmp_path / "device.env"
    env_file.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n"
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD=secret\n"
        "TOUCHLAMP_DEVICE_HOMEASSISTANT__HOST=127.0.0.1\n"
        "TOUCHLAMP_DEVICE_HOMEASSISTANT__TLS=true\n"
        f"TOUCHLAMP_DEVICE_HOMEASSISTANT__CA_FILE={not_a_certificate}\n"
    )
    code = main(["device", "run", "--simulate", "--env-file", str(env_file)])
    assert code == 1
    error = capsys.readouterr().err
    assert "TOUCHLAMP_DEVICE_HOMEASSISTANT__CA_FILE" in error
    assert str(not_a_certificate) in error


def test_the_bridge_speaks_mqtt_5_too(
    world: World, home: HomeBroker, ha: HomeAssistantStandIn
) -> None:
    config = home_settings(home.host, home.port, protocol="5")
    a = with_home(world.lamp("lamp-a", color=AMBER), config)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair("lamp-a", "lamp-b")
    topics = HomeTopics("lamp-a")
    with world.relay(), world.simulator(a, b) as simulator:
        lamp_b = running(simulator, "lamp-b")
        running(simulator, "lamp-a")
        ha.latest(topics.availability, b"online")
        ha.latest(topics.config("button", "send_touch"))
        ha.publish(topics.send_touch, b"PRESS")
        wait_until(lambda: same_hue(lamp_b.led(), AMBER, gamma=2.2), "B glowing in amber")
    # Mosquitto logs each client's protocol: p5 is MQTT 5 (p4 would be 3.1.1).
    assert "as touchlamp-lamp-a (p5," in (home.directory / "mosquitto.log").read_text()


def test_the_home_broker_over_tls_trusts_its_ca_only(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certificates = make_certificates(tmp_path / "home-tls", hosts=["127.0.0.1"])
    stranger = make_certificates(tmp_path / "another-ca", hosts=["127.0.0.1"])
    users = {HA_USER: HA_PASSWORD}
    with HomeBroker(tmp_path / "tls-home", users=users, tls=certificates) as home:
        ha = HomeAssistantStandIn(home)
        try:
            trusting = home_settings(
                "127.0.0.1", home.tls_port, tls=True, ca_file=certificates.ca_certificate
            )
            fooled = home_settings(
                "127.0.0.1", home.tls_port, tls=True, ca_file=stranger.ca_certificate
            )
            a = with_home(world.lamp("lamp-a", color=AMBER), trusting)
            b = with_home(world.lamp("lamp-b", color=BLUE), fooled)
            world.pair("lamp-a", "lamp-b")
            with world.relay(), world.simulator(a, b) as simulator:
                running(simulator, "lamp-a")
                lamp_b = running(simulator, "lamp-b")
                ha.latest(HomeTopics("lamp-a").availability, b"online")
                wait_until(
                    lambda: "lamp lamp-b: cannot reach the home broker" in caplog.text,
                    "lamp B's refusal of the other CA's certificate logged",
                )
                assert "TOUCHLAMP_DEVICE_HOMEASSISTANT__CA_FILE" in caplog.text
                assert "certificate" in caplog.text
                assert lamp_b.home is not None
                assert lamp_b.home.connections == 0  # it never talked to an untrusted broker
        finally:
            ha.close()
