"""Against a real Home Assistant core (2024.3.3 in ``.venv-ha``): the lamp's entities exist with
the right states, the button pressed through Home Assistant's REST API lights the partner, a
touch received fires the event, and Home Assistant's own schemas keep every key we send.

Slow (Home Assistant starts in a few seconds, its venv is ~700 MB): skipped when ``.venv-ha``
does not exist (``scripts/setup`` makes it unless ``TOUCHLAMP_SKIP_HOMEASSISTANT=1``; so does
``scripts/setup-homeassistant``). The device page's screenshot for README.md is taken here too,
in Debian's headless Chromium.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device.test_homeassistant_bridge import HA_PASSWORD, HA_USER, home_settings, with_home
from tests.e2e.world import BrokerLike, World, same_hue
from tests.ha.hass import HA_VENV, HomeAssistantCore
from tests.support.home_broker import HomeBroker
from tests.support.waiting import wait_until
from touchlamp.device.homeassistant_discovery import DiscoveryDevice, HomeTopics, discovery_configs
from touchlamp.device.status import MemberStatus

AMBER = "#ff8c1a"
BLUE = "#3c78ff"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (HA_VENV / "bin" / "hass").exists(),
        reason=f"no Home Assistant in {HA_VENV}: run scripts/setup-homeassistant",
    ),
]

ENTITIES = {
    "event.lamp_a_touch_received": "unknown",
    "button.lamp_a_send_touch": "unknown",
    "switch.lamp_a_quiet": "off",
    "sensor.lamp_a_missed_touches": "0",
    "binary_sensor.lamp_a_member_lamp_b_online": "on",
}


@pytest.fixture
def home(tmp_path: Path) -> Iterator[HomeBroker]:
    with HomeBroker(tmp_path / "home-broker", users={HA_USER: HA_PASSWORD}) as broker:
        yield broker


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


def test_home_assistants_own_schemas_keep_every_key() -> None:
    """Home Assistant drops keys it does not know without a word: none of ours may be dropped."""
    device = DiscoveryDevice(
        lamp_id="lamp-a", name="A", sw_version="0.1.0", configuration_url="http://a.local:80/"
    )
    member = MemberStatus(id="lamp-b", name="B", color="#000000", online=True)
    configs = discovery_configs(device, HomeTopics("lamp-a"), [member])
    script = """
import importlib, json, sys
dropped = {}
for topic, config in json.load(sys.stdin).items():
    component = topic.split("/")[1]
    schema = importlib.import_module(f"homeassistant.components.mqtt.{component}").DISCOVERY_SCHEMA
    kept = schema(dict(config))
    lost = sorted(set(config) - set(kept))
    lost += sorted("device." + k for k in set(config["device"]) - set(kept["device"]))
    if lost:
        dropped[topic] = lost
print(json.dumps(dropped))
"""
    checked = subprocess.run(
        [str(HA_VENV / "bin" / "python"), "-c", script],
        input=json.dumps(configs),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(checked.stdout) == {}


def _states(hass: HomeAssistantCore) -> dict[str, str | None]:
    found = {entity: hass.state(entity) for entity in ENTITIES}
    return {entity: None if state is None else state["state"] for entity, state in found.items()}


def test_the_lamp_in_a_real_home_assistant(world: World, home: HomeBroker, tmp_path: Path) -> None:
    a = with_home(
        world.lamp("lamp-a", color=AMBER, name="Anna's lamp"), home_settings(home.host, home.port)
    )
    b = world.lamp("lamp-b", color=BLUE, name="Ben")
    world.pair("lamp-a", "lamp-b")
    with (
        world.relay(),
        world.simulator(a, b) as simulator,
        HomeAssistantCore(
            tmp_path / "hass",
            mqtt_host=home.host,
            mqtt_port=home.port,
            username=HA_USER,
            password=HA_PASSWORD,
        ) as hass,
    ):
        lamp_b = simulator.lamp("lamp-b")
        try:
            wait_until(lambda: _states(hass) == ENTITIES, f"the entities {ENTITIES}")
        except AssertionError as error:
            error.add_note(f"states: {_states(hass)}\nHome Assistant's log:\n{hass.log_tail()}")
            raise

        device_id = hass.post(
            "/api/template", {"template": "{{ device_id('button.lamp_a_send_touch') }}"}
        )
        assert (
            hass.post(
                "/api/template", {"template": f"{{{{ device_attr('{device_id}', 'name') }}}}"}
            )
            == "Anna's lamp"
        )

        # The button, pressed through Home Assistant: the partner glows in lamp A's colour.
        hass.post("/api/services/button/press", {"entity_id": "button.lamp_a_send_touch"})
        wait_until(
            lambda: same_hue(lamp_b.led(), AMBER, gamma=2.2) and max(lamp_b.led()) > 0.5,
            "lamp B glowing in A's amber after Home Assistant pressed the button",
        )

        # A touch from B: the event entity fires with who and which colour.
        simulator.lamp("lamp-b").agent.touch()

        def fired() -> dict[str, Any] | None:
            event = hass.state("event.lamp_a_touch_received")
            return event if event is not None and event["state"] != "unknown" else None

        wait_until(lambda: fired() is not None, "the event fired in Home Assistant")
        event = fired()
        assert event is not None
        attributes = event["attributes"]
        assert attributes["event_type"] in ("touch", "mutual")
        assert (attributes["from"], attributes["color"]) == ("Ben", BLUE)

        # The switch, through Home Assistant: the lamp is quiet now, and says so.
        hass.post("/api/services/switch/turn_on", {"entity_id": "switch.lamp_a_quiet"})
        wait_until(lambda: simulator.lamp("lamp-a").agent.status().quiet_now, "A quiet now")
        wait_until(lambda: (hass.state("switch.lamp_a_quiet") or {}).get("state") == "on", "on")

        if CHROMIUM.exists():
            _screenshot(hass, str(device_id))

        # Presence: B goes away, Home Assistant sees it.
        simulator.lamp("lamp-b").stop()
        wait_until(
            lambda: (
                (hass.state("binary_sensor.lamp_a_member_lamp_b_online") or {}).get("state")
                == "off"
            ),
            "B offline in Home Assistant",
        )
        # A stops: every entity unavailable (the bridge's "offline").
        simulator.lamp("lamp-a").stop()
        wait_until(
            lambda: set(_states(hass).values()) == {"unavailable"}, "A's entities unavailable"
        )


def _screenshot(hass: HomeAssistantCore, device_id: str) -> None:
    """The device page in Home Assistant's own frontend, logged in with the test's token."""
    from playwright.sync_api import sync_playwright

    tokens = {
        "access_token": hass.token,
        "token_type": "Bearer",
        "expires_in": 315360000,
        "hassUrl": hass.url,
        "clientId": hass.url + "/",
        "expires": 4102444800000,
        "refresh_token": "",
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(30_000)
            # Logged in before the frontend's first script runs: it reads hassTokens at start.
            page.add_init_script(
                f"localStorage.setItem('hassTokens', JSON.stringify({json.dumps(tokens)}))"
            )
            page.goto(f"{hass.url}/config/devices/device/{device_id}")
            ARTIFACTS.mkdir(exist_ok=True)
            try:
                page.get_by_text("Send a touch").first.wait_for()
                page.get_by_text("Missed touches").first.wait_for()
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "homeassistant-device-failed.png"))
                raise
            page.wait_for_timeout(1500)  # icons and the history chart settle
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "homeassistant-device.png"))
        finally:
            browser.close()
