"""Home Assistant discovery payloads against the keys Home Assistant documents, and the settings.

The key sets below are Home Assistant 2024.3's for each MQTT platform (its documentation pages
``event.mqtt``, ``button.mqtt``, ``switch.mqtt``, ``sensor.mqtt``, ``binary_sensor.mqtt``, and
the same keys in its ``DISCOVERY_SCHEMA``s). Home Assistant *drops* a key it does not know
without a word, so a misspelt key would silently do nothing: every key sent must be in the set.
tests/ha checks the same payloads with Home Assistant's own schemas when its venv exists.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from touchlamp.config.device import DeviceSettings, HomeAssistantSettings
from touchlamp.device.homeassistant_discovery import (
    DiscoveryDevice,
    HomeTopics,
    discovery_configs,
    event_payload,
)
from touchlamp.device.homeassistant_settings import settings_from_url, with_home_assistant
from touchlamp.device.status import GlowNews, MemberStatus

_COMMON = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "qos",
    "unique_id",
}
DOCUMENTED = {
    "event": _COMMON | {"device_class", "event_types", "state_topic", "value_template"},
    "button": _COMMON
    | {"command_template", "command_topic", "device_class", "payload_press", "retain"},
    "switch": _COMMON
    | {
        "command_topic",
        "device_class",
        "optimistic",
        "payload_off",
        "payload_on",
        "retain",
        "state_off",
        "state_on",
        "state_topic",
        "value_template",
    },
    "sensor": _COMMON
    | {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "state_class",
        "state_topic",
        "suggested_display_precision",
        "unit_of_measurement",
        "value_template",
    },
    "binary_sensor": _COMMON
    | {
        "device_class",
        "expire_after",
        "force_update",
        "off_delay",
        "payload_off",
        "payload_on",
        "state_topic",
        "value_template",
    },
}
REQUIRED = {
    "event": {"event_types", "state_topic"},
    "button": {"command_topic"},
    "switch": {"command_topic"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_STATE_CLASSES = {"measurement", "total", "total_increasing"}

DEVICE = DiscoveryDevice(
    lamp_id="lamp-a",
    name="Anna's lamp",
    sw_version="0.1.0",
    configuration_url="http://anna.local:8080/",
)
TOPICS = HomeTopics("lamp-a")
MEMBERS = (
    MemberStatus(id="lamp-b", name="Ben", color="#3c78ff", online=True),
    MemberStatus(id="lamp-c", name="Cleo", color="#00ff00", online=False),
)


def configs() -> dict[str, dict[str, Any]]:
    return discovery_configs(DEVICE, TOPICS, MEMBERS)


def test_every_entity_is_there_once_with_its_documented_keys() -> None:
    made = configs()
    by_kind: dict[str, list[str]] = {}
    for topic, config in made.items():
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "touchlamp_lamp-a", "config")
        assert object_id.replace("_", "").replace("-", "").isalnum()
        unknown = set(config) - DOCUMENTED[component]
        assert not unknown, f"{topic}: keys Home Assistant would drop: {unknown}"
        missing = REQUIRED[component] - set(config)
        assert not missing, f"{topic}: required keys missing: {missing}"
        assert set(config["device"]) <= DEVICE_KEYS
        assert set(config["origin"]) <= ORIGIN_KEYS
        by_kind.setdefault(component, []).append(str(config["name"]))
    assert by_kind == {
        "event": ["Touch received"],
        "button": ["Send a touch"],
        "switch": ["Quiet"],
        "sensor": ["Missed touches"],
        "binary_sensor": ["Ben online", "Cleo online"],
    }
    unique_ids = [config["unique_id"] for config in made.values()]
    assert len(set(unique_ids)) == len(unique_ids)


def test_one_device_with_a_link_to_the_lamps_page_and_availability_by_the_will() -> None:
    for config in configs().values():
        assert config["device"] == {
            "identifiers": ["touchlamp_lamp-a"],
            "name": "Anna's lamp",
            "manufacturer": "touchlamp",
            "model": "Long-distance touch lamp",
            "sw_version": "0.1.0",
            "configuration_url": "http://anna.local:8080/",
        }
        assert config["availability_topic"] == "touchlamp/lamp-a/availability"
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online",
            "offline",
        )


def test_the_entities_payloads_and_topics() -> None:
    made = configs()
    event = made["homeassistant/event/touchlamp_lamp-a/touch_received/config"]
    assert event["event_types"] == ["touch", "mutual"]
    assert event["state_topic"] == "touchlamp/lamp-a/touch_received"
    button = made["homeassistant/button/touchlamp_lamp-a/send_touch/config"]
    assert (button["command_topic"], button["payload_press"]) == (
        "touchlamp/lamp-a/send_touch",
        "PRESS",
    )
    assert button["retain"] is False  # a retained press would repeat at every reconnect
    switch = made["homeassistant/switch/touchlamp_lamp-a/quiet/config"]
    assert switch["command_topic"] == "touchlamp/lamp-a/quiet/set"
    assert switch["state_topic"] == "touchlamp/lamp-a/quiet"
    assert switch["optimistic"] is False  # the state is the lamp's, not the last command
    sensor = made["homeassistant/sensor/touchlamp_lamp-a/missed_touches/config"]
    assert sensor["state_class"] in SENSOR_STATE_CLASSES
    presence = made["homeassistant/binary_sensor/touchlamp_lamp-a/member_lamp-b_online/config"]
    assert presence["device_class"] == "connectivity"
    assert presence["state_topic"] == "touchlamp/lamp-a/member/lamp-b/online"
    assert TOPICS.commands == ("touchlamp/lamp-a/send_touch", "touchlamp/lamp-a/quiet/set")


def test_a_lamp_without_partners_has_no_presence_sensor() -> None:
    made = discovery_configs(DEVICE, TOPICS, ())
    assert not [topic for topic in made if "/binary_sensor/" in topic]
    assert set(made) == set(TOPICS.fixed_configs)


def test_the_discovery_prefix_and_topic_root_are_the_settings() -> None:
    topics = HomeTopics("lamp-a", topic_root="home/lamps", discovery_prefix="ha")
    made = discovery_configs(DEVICE, topics, MEMBERS)
    assert all(topic.startswith("ha/") for topic in made)
    assert all(
        str(config["availability_topic"]).startswith("home/lamps/lamp-a/")
        for config in made.values()
    )


@pytest.mark.parametrize(("mutual", "kind"), [(False, "touch"), (True, "mutual")])
def test_the_event_says_who_and_which_colour(mutual: bool, kind: str) -> None:
    glow = GlowNews(from_lamp="lamp-b", color="#3c78ff", mutual=mutual, shown=False, at=1.0)
    assert json.loads(event_payload(glow, MEMBERS)) == {
        "event_type": kind,
        "from": "Ben",
        "from_lamp": "lamp-b",
        "color": "#3c78ff",
        "shown": False,
    }


def test_an_event_from_a_lamp_not_in_the_group_names_its_id() -> None:
    glow = GlowNews(from_lamp="lamp-z", color="#3c78ff", mutual=False, shown=True, at=1.0)
    assert json.loads(event_payload(glow, MEMBERS))["from"] == "lamp-z"


# ---- settings -----------------------------------------------------------------------------------


def test_off_unless_a_host_is_set() -> None:
    assert not HomeAssistantSettings().active
    assert HomeAssistantSettings(host="ha.local").active
    disabled = HomeAssistantSettings(host="ha.local", enabled=False)
    assert disabled.configured
    assert not disabled.active


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://ha.local:1883", ("ha.local", 1883, None, None, False)),
        ("mqtt://ha.local", ("ha.local", None, None, None, False)),
        ("mqtt://me:p%40ss@10.0.0.2:1884", ("10.0.0.2", 1884, "me", "p@ss", False)),
        ("mqtts://me:pw@ha.local:8883/", ("ha.local", 8883, "me", "pw", True)),
    ],
)
def test_the_command_lines_home_broker_address(
    url: str, expected: tuple[str, int | None, str | None, str | None, bool]
) -> None:
    settings = settings_from_url(url)
    password = settings.password.get_secret_value() if settings.password else None
    assert (settings.host, settings.port, settings.username, password, settings.tls) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://ha.local:1883", "not a home broker address"),
        ("mqtt://ha.local:99999", "no valid port"),
        ("mqtt://:1883", "names no host"),
        ("mqtt://ha.local:1883/homeassistant", "more than a host and port"),
    ],
)
def test_a_bad_home_broker_address_says_what_is_wrong_and_the_form(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as raised:
        settings_from_url(url)
    assert "mqtt://[USER:PASSWORD@]HOST:PORT" in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"host": "h", "ca_file": "/etc/ca.crt"}, "TOUCHLAMP_DEVICE_HOMEASSISTANT__TLS=true"),
        ({"host": "h", "password": "pw"}, "TOUCHLAMP_DEVICE_HOMEASSISTANT__USERNAME"),
        ({"host": "h", "protocol": "3"}, "protocol"),
        ({"host": "h", "discovery_prefix": "home assistant"}, "discovery_prefix"),
    ],
)
def test_bad_home_assistant_settings_name_the_fix(fields: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        HomeAssistantSettings(**fields)


def test_the_command_lines_home_broker_goes_to_every_lamp_with_the_page_port() -> None:
    lamp = DeviceSettings(lamp_id="lamp-a")
    home = settings_from_url("mqtt://ha.local:1883")
    assert with_home_assistant(lamp, home, 8181).homeassistant.page_port == 8181
    # A free port chosen later (0): the default link stays until the page is known.
    assert with_home_assistant(lamp, home, 0).homeassistant.page_port == 8080
    fixed = home.model_copy(update={"configuration_url": "http://lamp.example/"})
    assert with_home_assistant(lamp, fixed, 8181).homeassistant.page_port == 8080
