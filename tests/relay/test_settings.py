"""Relay settings: defaults that work, secrets from files, and a clear error for a typo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from touchlamp.config import SettingsError, load_settings
from touchlamp.config.relay import RelaySettings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CREDENTIALS_DIRECTORY", "TOUCHLAMP_SECRETS_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


def test_defaults_put_the_store_under_the_state_directory(tmp_path: Path) -> None:
    settings = load_settings(RelaySettings)
    assert settings.store_location == str(tmp_path / "xdg" / "touchlamp-relay" / "relay.sqlite3")
    assert settings.forwarding.glow_expiry_seconds == 6 * 3600
    assert settings.mqtt.effective_port == 1883
    assert (settings.public_host, settings.public_port) == ("localhost", 1883)


def test_passwords_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "relay.password"
    secret.write_text("from-a-file\n")
    env_file = tmp_path / "relay.env"
    env_file.write_text(f"TOUCHLAMP_RELAY_MQTT__PASSWORD_FILE={secret}\n")
    monkeypatch.setenv("TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE", str(secret))
    settings = load_settings(RelaySettings, env_file=env_file)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-a-file"
    assert settings.admin.password is not None
    assert settings.admin.password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(settings)


def test_a_postgres_dsn_is_used_as_is_and_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = "postgresql://relay:hunter2@db.example/touchlamp"
    monkeypatch.setenv("TOUCHLAMP_RELAY_STORE_URL", dsn)
    settings = load_settings(RelaySettings)
    assert settings.store_location == dsn
    assert "hunter2" not in repr(settings)


def test_the_public_address_follows_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_RELAY_PUBLIC__HOST", "lamps.example.net")
    monkeypatch.setenv("TOUCHLAMP_RELAY_PUBLIC__TLS", "true")
    settings = load_settings(RelaySettings)
    assert (settings.public_host, settings.public_port, settings.public_tls) == (
        "lamps.example.net",
        8883,
        True,
    )


def test_a_misspelt_variable_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_RELAY_PAIRING__CODE_LENGHT", "6")
    with pytest.raises(SettingsError, match="TOUCHLAMP_RELAY_PAIRING__CODE_LENGHT"):
        load_settings(RelaySettings)


def test_codes_shorter_than_six_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_RELAY_PAIRING__CODE_LENGTH", "4")
    with pytest.raises(SettingsError, match=r"pairing\.code_length"):
        load_settings(RelaySettings)


EXAMPLE = Path(__file__).parents[2] / "config" / "relay.env.example"


def test_the_example_file_loads_as_it_is() -> None:
    assert load_settings(RelaySettings, env_file=EXAMPLE) == load_settings(RelaySettings)


def test_the_defaults_the_example_shows_are_the_real_defaults(tmp_path: Path) -> None:
    shown = [
        line.removeprefix("# ")
        for line in EXAMPLE.read_text().splitlines()
        if re.fullmatch(r"# TOUCHLAMP_RELAY_[A-Z_]+=.*", line)
    ]
    assert len(shown) > 25
    uncommented = tmp_path / "relay.env"
    uncommented.write_text("\n".join(shown) + "\n")
    assert load_settings(RelaySettings, env_file=uncommented) == load_settings(RelaySettings)


def test_every_setting_is_described_in_the_example() -> None:
    text = EXAMPLE.read_text()

    def names(model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        for field, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += names(annotation, f"{prefix}{field.upper()}__")
            else:
                found.append(f"{prefix}{field.upper()}")
        return found

    missing = [
        name
        for name in names(RelaySettings, "TOUCHLAMP_RELAY_")
        if f"{name}=" not in text and f"{name}_FILE=" not in text
    ]
    assert missing == []
