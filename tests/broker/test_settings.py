"""``BrokerSettings``: defaults, environment variables, and messages that say the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from touchlamp.config.broker import BrokerSettings, ListenerSettings
from touchlamp.config.common import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_BROKER_"):
            monkeypatch.delenv(name)


def test_defaults_are_a_loopback_broker_with_the_protocol_root() -> None:
    settings = load_settings(BrokerSettings)
    assert settings.listeners == [ListenerSettings(address="127.0.0.1", port=1883)]
    assert settings.topic_root == "touchlamp/v1"
    assert not settings.tls.enabled
    assert not settings.websockets.enabled


def test_nested_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_BROKER_LISTENERS", '[{"address": "::1", "port": 1884}]')
    monkeypatch.setenv("TOUCHLAMP_BROKER_LIMITS__MAX_QUEUED_MESSAGES", "50")
    monkeypatch.setenv("TOUCHLAMP_BROKER_TOPIC_ROOT", "home/lamps")
    settings = load_settings(BrokerSettings)
    assert settings.listeners == [ListenerSettings(address="::1", port=1884)]
    assert settings.limits.max_queued_messages == 50
    assert settings.topic_root == "home/lamps"


def test_an_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "broker.env"
    env_file.write_text("TOUCHLAMP_BROKER_STATE_DIR=/srv/broker\n", encoding="utf-8")
    assert load_settings(BrokerSettings, env_file=env_file).state_dir == Path("/srv/broker")


def test_the_example_env_file_loads() -> None:
    example = Path(__file__).parents[2] / "config" / "broker.env.example"
    load_settings(BrokerSettings, env_file=example)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TOUCHLAMP_BROKER_LISTENERS", '[{"port": 70000}]', "less than or equal to 65535"),
        ("TOUCHLAMP_BROKER_LISTENERS", "[]", "at least 1 item"),
        ("TOUCHLAMP_BROKER_TOPIC_ROOT", "touchlamp/#", "not a topic root"),
        ("TOUCHLAMP_BROKER_LIMITS__MAX_PACKET_SIZE", "100", "greater than or equal to"),
        ("TOUCHLAMP_BROKER_LIMITS__PERSISTENT_CLIENT_EXPIRATION", "30 days", "pattern"),
        ("TOUCHLAMP_BROKER_RUN_AS_USER", "mosquitto; rm", "use 1-64 characters"),
        ("TOUCHLAMP_BROKER_TLS__ENABLED", "true", "set TOUCHLAMP_BROKER_TLS__CERTFILE"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message) as raised:
        load_settings(BrokerSettings)
    assert "TOUCHLAMP_BROKER_" in str(raised.value)


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x", encoding="utf-8")
    tls = {"enabled": True, "certfile": cert, "keyfile": tmp_path / "key.pem"}
    expected = r"TLS keyfile \S*key.pem does not exist: fix TOUCHLAMP_BROKER_TLS__KEYFILE"
    with pytest.raises(SettingsError, match=expected):
        load_settings(BrokerSettings, tls=tls)


def test_two_listeners_on_one_port_are_refused() -> None:
    with pytest.raises(SettingsError, match="both use port 1883: choose another"):
        load_settings(BrokerSettings, websockets={"enabled": True, "port": 1883})


def test_wss_needs_the_tls_certificate() -> None:
    with pytest.raises(SettingsError, match=r"websockets\.tls needs the TLS certificate"):
        load_settings(BrokerSettings, websockets={"enabled": True, "tls": True})
