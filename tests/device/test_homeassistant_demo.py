"""``touchlamp demo --homeassistant URL`` as a user runs it: the simulated lamps appear in the
Home Assistant on that broker (here a second real Mosquitto and a client in Home Assistant's
place), its button touches, and stopping the demo leaves them unavailable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.test_demo import _by_id, _demo, _lamps_until, _stop
from tests.device.test_homeassistant_bridge import HA_PASSWORD, HA_USER, HomeAssistantStandIn
from tests.e2e.world import same_hue
from tests.support.home_broker import HomeBroker
from touchlamp.device.homeassistant_discovery import HomeTopics
from touchlamp.device.looks import Rgb


@pytest.fixture
def home(tmp_path: Path) -> Iterator[HomeBroker]:
    with HomeBroker(tmp_path / "home-broker", users={HA_USER: HA_PASSWORD}) as broker:
        yield broker


def test_the_demos_lamps_appear_in_home_assistant(tmp_path: Path, home: HomeBroker) -> None:
    ha = HomeAssistantStandIn(home)
    state_dir = tmp_path / "state"
    url = f"mqtt://{HA_USER}:{HA_PASSWORD}@{home.host}:{home.port}"
    try:
        with _demo(state_dir, ("demo", "--no-browser", "--homeassistant", url)) as (
            process,
            document,
        ):
            web = document["web"]
            lamps = _lamps_until(web, lambda lamps: all(lamp["online"] for lamp in lamps))
            for lamp, other in (("lamp-a", "lamp-b"), ("lamp-b", "lamp-a")):
                topics = HomeTopics(lamp)
                ha.latest(topics.availability, b"online")
                config = json.loads(ha.latest(topics.config("button", "send_touch")).payload)
                assert config["device"]["name"] == _by_id(lamps)[lamp]["name"]
                ha.latest(topics.member_online(other), b"ON")

            amber = _by_id(lamps)["lamp-a"]["color"]
            ha.publish(HomeTopics("lamp-a").send_touch, b"PRESS")
            _lamps_until(
                web,
                lambda lamps: same_hue(Rgb(*_by_id(lamps)["lamp-b"]["led"]), amber, gamma=2.2),
            )
            _stop(process, state_dir)
        for lamp in ("lamp-a", "lamp-b"):
            ha.latest(HomeTopics(lamp).availability, b"offline")
    finally:
        ha.close()
