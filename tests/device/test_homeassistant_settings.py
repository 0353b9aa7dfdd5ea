"""Home Assistant's settings set by the lamp's owner (issue 14: "settable on the lamp's own page"):
over the page's HTTP API and with ``touchlamp device set``, against real brokers (the lamps' own
and a second Mosquitto as the home's), applied at once and kept in the lamp's settings file."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.test_homeassistant_bridge import (
    HA_PASSWORD,
    HA_USER,
    HomeAssistantStandIn,
    ha,
    home,
)
from tests.device.test_owner_page import Browser, _quick_hold, owner_of
from tests.e2e.world import BrokerLike, World, served_page
from tests.support.home_broker import HomeBroker
from tests.support.waiting import wait_until
from touchlamp.cli import main
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.lamp_file import LAMP_FILE
from touchlamp.device.homeassistant_discovery import HomeTopics
from touchlamp.device.sim import Simulator

__all__ = ["ha", "home"]  # the fixtures, used by name

AMBER = "#ff8c1a"


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


@pytest.fixture
def simulator(world: World) -> Iterator[Simulator]:
    lamp = _quick_hold(world.lamp("lamp-a", color=AMBER, name="Kitchen"))
    with world.relay(), world.simulator(lamp) as running:
        wait_until(lambda: running.lamp("lamp-a").agent.online, "lamp A online")
        yield running


def _values(answer_settings: list[dict[str, object]]) -> dict[str, object]:
    return {str(value["key"]): value["value"] for value in answer_settings}


def test_the_owner_connects_the_lamp_to_home_assistant_from_its_page_and_turns_it_off(
    simulator: Simulator, home: HomeBroker, ha: HomeAssistantStandIn
) -> None:
    lamp = simulator.lamp("lamp-a")
    topics = HomeTopics("lamp-a")
    button = topics.config("button", "send_touch")
    with served_page(simulator) as url:
        owner = Browser(url)
        owner_of(owner, simulator)
        assert lamp.home is None

        answer = owner.post(
            "lamp-a",
            "settings",
            {
                "changes": {
                    "homeassistant.host": home.host,
                    "homeassistant.port": home.port,
                    "homeassistant.username": HA_USER,
                    "homeassistant.password": HA_PASSWORD,
                }
            },
        )
        assert answer.status == 200, answer.data
        # Applied at once: the lamp appears in Home Assistant, without a restart.
        ha.latest(topics.availability, b"online")
        assert json.loads(ha.latest(button).payload)["device"]["identifiers"] == [
            "touchlamp_lamp-a"
        ]

        # Write-only: the password is never sent back, only whether one is set.
        shown = owner.get("lamp-a")
        assert _values(shown.data["settings"])["homeassistant.password"] == "set"
        assert HA_PASSWORD not in json.dumps(shown.data)
        assert HA_PASSWORD not in json.dumps(answer.data)
        # Kept for the next start, in the lamp user's own file.
        lamp_file = lamp.settings.state_dir / LAMP_FILE
        assert stat.S_IMODE(lamp_file.stat().st_mode) == 0o600
        assert json.loads(lamp_file.read_text())["homeassistant"]["password"] == HA_PASSWORD

        # A bad value: refused with the field named, and nothing changed (still connected).
        before = lamp_file.read_text()
        refused = owner.post("lamp-a", "settings", {"changes": {"homeassistant.port": 70000}})
        assert refused.status == 400
        assert refused.data["field"] == "homeassistant.port"
        assert "nothing was changed" in refused.data["error"]
        refused = owner.post("lamp-a", "settings", {"changes": {"homeassistant.protocol": "4"}})
        assert refused.data["field"] == "homeassistant.protocol"
        assert lamp_file.read_text() == before
        bridge = lamp.home
        assert bridge is not None
        assert bridge.connected

        # A bad password in an error message would reach the browser: it is not quoted.
        refused = owner.post(
            "lamp-a", "settings", {"changes": {"homeassistant.password": ["not", "a", "secret"]}}
        )
        assert refused.status == 400
        assert "not" not in refused.data["error"].split("is not accepted")[0]

        # Turned off on the page: the discovery configs are removed (empty, retained).
        answer = owner.post("lamp-a", "settings", {"changes": {"homeassistant.enabled": False}})
        assert answer.status == 200, answer.data
        ha.latest(button, b"")
        assert lamp.home is None


def test_device_set_reaches_the_running_lamps_bridge_and_survives_a_restart(
    world: World,
    simulator: Simulator,
    home: HomeBroker,
    ha: HomeAssistantStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lamp = simulator.lamp("lamp-a")
    env_file = world.env_file(lamp.settings)
    changes = [
        *("homeassistant.host", home.host),
        *("homeassistant.port", str(home.port)),
        *("homeassistant.username", HA_USER),
        *("homeassistant.password", HA_PASSWORD),
        *("homeassistant.discovery_prefix", "ha-test"),
    ]
    assert main(["device", "set", *changes, "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert HA_PASSWORD not in out
    assert re.search(r"homeassistant\.password +=  ?set ", out), out

    ha.probe.subscribe("ha-test/#")
    topics = HomeTopics("lamp-a", discovery_prefix="ha-test")
    ha.latest(topics.config("button", "send_touch"))
    ha.latest(topics.availability, b"online")

    # A bad value from the shell: exit 2, nothing changed.
    assert main(["device", "set", "homeassistant.tls", "maybe", "--env-file", str(env_file)]) == 2
    assert "homeassistant.tls" in capsys.readouterr().err

    restarted = load_settings(DeviceSettings, env_file=env_file).homeassistant
    assert (restarted.host, restarted.port, restarted.username) == (home.host, home.port, HA_USER)
    assert restarted.password is not None
    assert restarted.password.get_secret_value() == HA_PASSWORD
    assert restarted.discovery_prefix == "ha-test"
    assert restarted.tls is False
