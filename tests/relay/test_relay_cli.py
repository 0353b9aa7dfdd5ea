"""`touchlamp relay lamp|pair|group …` as an operator uses them, against a real broker and store."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.relay.lamps import Endpoint, TestLamp
from tests.support.broker import BrokerFixture
from tests.support.waiting import WAIT, wait_until
from touchlamp.cli import main
from touchlamp.protocol import decode_token


@pytest.fixture
def env_file(broker: BrokerFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The relay's env file as an operator writes it for this broker."""
    for name in ("CREDENTIALS_DIRECTORY", "TOUCHLAMP_SECRETS_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    layout = broker.managed.layout
    path = tmp_path / "relay.env"
    path.write_text(
        f"TOUCHLAMP_RELAY_STATE_DIR={tmp_path / 'relay-state'}\n"
        f"TOUCHLAMP_RELAY_MQTT__HOST={broker.host}\n"
        f"TOUCHLAMP_RELAY_MQTT__PORT={broker.port}\n"
        f"TOUCHLAMP_RELAY_MQTT__TOPIC_ROOT={broker.topics.root}\n"
        f"TOUCHLAMP_RELAY_MQTT__PASSWORD_FILE={layout.relay_password_file}\n"
        f"TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE={layout.admin_password_file}\n"
        "TOUCHLAMP_RELAY_PUBLIC__HOST=lamps.example.net\n"
    )
    return path


def relay(env_file: Path, *args: str) -> int:
    return main(["relay", *args, "--env-file", str(env_file)])


def connects(host: str, port: int, lamp_id: str, password: str) -> ReasonCode:
    """Log in as a lamp; the CONNACK's reason code."""
    answered = threading.Event()
    reasons: list[ReasonCode] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=lamp_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(lamp_id, password)

    def on_connect(*args: object) -> None:
        reason = args[3]
        assert isinstance(reason, ReasonCode)
        reasons.append(reason)
        answered.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    try:
        assert answered.wait(WAIT), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


def test_lamp_add_prints_a_token_a_lamp_can_log_in_with(
    broker: BrokerFixture, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert relay(env_file, "lamp", "add", "lamp-kitchen", "--name", "Kitchen") == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert "\n" not in token
    assert f"touchlamp device enroll {token}" in err
    enrollment = decode_token(token)
    assert (enrollment.lamp, enrollment.host, enrollment.port, enrollment.root) == (
        "lamp-kitchen",
        "lamps.example.net",
        1883,
        broker.topics.root,
    )
    # The printed address is the public one; on this machine the broker is on a test port.
    assert not connects(broker.host, broker.port, "lamp-kitchen", enrollment.password).is_failure

    assert relay(env_file, "lamp", "list") == 0
    listing = capsys.readouterr().out
    assert "lamp-kitchen" in listing
    assert "Kitchen" in listing
    assert "never" in listing


def test_lamp_add_json_has_everything_a_script_needs(
    broker: BrokerFixture, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert relay(env_file, "lamp", "add", "lamp-hall", "--json", "--color", "#00FF00") == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"lamp", "username", "password", "host", "port", "token"}
    assert printed["username"] == printed["lamp"] == "lamp-hall"
    assert decode_token(printed["token"]).password == printed["password"]
    assert not connects(broker.host, broker.port, "lamp-hall", printed["password"]).is_failure
    assert relay(env_file, "lamp", "list", "--json") == 0
    [lamp] = json.loads(capsys.readouterr().out)
    assert (lamp["id"], lamp["color"], lamp["group"]) == ("lamp-hall", "#00ff00", None)


def test_adding_a_lamp_twice_is_refused_and_the_first_still_works(
    broker: BrokerFixture, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert relay(env_file, "lamp", "add", "lamp-a", "--json") == 0
    password = json.loads(capsys.readouterr().out)["password"]
    assert relay(env_file, "lamp", "add", "lamp-a") == 1
    assert "already registered" in capsys.readouterr().err
    assert not connects(broker.host, broker.port, "lamp-a", password).is_failure


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lamp", "add", "Not A Lamp"], "not a lamp id"),
        (["lamp", "add", "lamp-a", "--color", "orange"], "not a colour"),
        (["lamp", "remove", "lamp-nobody"], "no lamp lamp-nobody is registered"),
        (["pair", "lamp-a", "lamp-nobody"], "not registered"),
        (["group", "show", "g-nothing"], "no group or lamp"),
    ],
)
def test_mistakes_are_explained(
    env_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert relay(env_file, "lamp", "add", "lamp-a", "--json") == 0
    capsys.readouterr()
    assert relay(env_file, *args) == 1
    assert message in capsys.readouterr().err


def test_without_the_admin_password_lamp_add_says_what_to_set(
    env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = env_file.read_text().splitlines()
    env_file.write_text("\n".join(line for line in lines if "ADMIN__" not in line) + "\n")
    assert relay(env_file, "lamp", "add", "lamp-a") == 1
    assert "TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE" in capsys.readouterr().err
    # Nothing half-done: the lamp is not registered either.
    assert relay(env_file, "lamp", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_pair_groups_and_remove(
    broker: BrokerFixture, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passwords = {}
    for lamp_id in ("lamp-a", "lamp-b", "lamp-c"):
        assert relay(env_file, "lamp", "add", lamp_id, "--json") == 0
        passwords[lamp_id] = json.loads(capsys.readouterr().out)["password"]
    endpoint = Endpoint(host=broker.host, port=broker.port, root=broker.topics.root)
    lamps = {lamp_id: TestLamp(endpoint, lamp_id, pw) for lamp_id, pw in passwords.items()}
    for lamp in lamps.values():
        lamp.connect()
    try:
        assert relay(env_file, "pair", "lamp-a", "lamp-b", "lamp-c", "--name", "family") == 0
        assert "Paired lamp-a, lamp-b, lamp-c" in capsys.readouterr().err
        # The command itself tells the lamps (no relay needs to run).
        for lamp in lamps.values():
            lamp.wait_group_state(lambda s: s.group == "family" and len(s.members) == 3, "3")
        # With a relay login of its own, made and deleted again (the relay's is bound to the
        # relay's client id).
        dynsec = json.loads(broker.managed.layout.dynsec_file.read_text(encoding="utf-8"))
        usernames = [client["username"] for client in dynsec["clients"]]
        assert not [name for name in usernames if name.startswith("relay-cli-")], usernames

        assert relay(env_file, "group", "list") == 0
        assert "family" in capsys.readouterr().out
        assert relay(env_file, "group", "show", "lamp-b") == 0
        shown = capsys.readouterr().out
        assert "family" in shown
        assert "lamp-c" in shown

        assert relay(env_file, "lamp", "remove", "lamp-c") == 0
        assert "revoked" in capsys.readouterr().err
        lamps["lamp-a"].wait_group_state(
            lambda s: [m.id for m in s.members] == ["lamp-a", "lamp-b"], "C gone"
        )
        # Revoked at once: its live connection is closed and it cannot log in again.
        wait_until(lambda: not lamps["lamp-c"].connected, "lamp-c to be disconnected")
        assert connects(broker.host, broker.port, "lamp-c", passwords["lamp-c"]).is_failure
    finally:
        for lamp in lamps.values():
            lamp.disconnect()
