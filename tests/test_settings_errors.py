"""A bad setting stops start-up with one message naming the field, its source and the form."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from touchlamp.config import SettingsError, load_settings


class _Mqtt(BaseModel):
    port: int = Field(default=1883, ge=1, le=65535)
    password: SecretStr | None = None


class ExampleSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOUCHLAMP_EXAMPLE_", env_nested_delimiter="__", extra="forbid"
    )

    lamp_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,31}$")
    mqtt: _Mqtt = _Mqtt()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CREDENTIALS_DIRECTORY", "TOUCHLAMP_SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_LAMP_ID", "lamp-a")
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_MQTT__PORT", "99999")
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings)
    message = str(raised.value)
    assert "ExampleSettings.mqtt.port" in message
    assert "environment variable TOUCHLAMP_EXAMPLE_MQTT__PORT" in message
    assert "less than or equal to 65535" in message
    assert "99999" in message


def test_env_file_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / "lamp.env"
    env_file.write_text("TOUCHLAMP_EXAMPLE_LAMP_ID=Not_A_Lamp\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings, env_file=env_file)
    message = str(raised.value)
    assert f"env file {env_file} (TOUCHLAMP_EXAMPLE_LAMP_ID)" in message
    assert "should match pattern" in message


def test_missing_value_says_how_to_set_it() -> None:
    with pytest.raises(SettingsError, match=r"TOUCHLAMP_EXAMPLE_LAMP_ID \(not set"):
        load_settings(ExampleSettings)


def test_missing_env_file_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(ExampleSettings, env_file=tmp_path / "nope.env")


def test_nested_secret_from_a_file_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    env_file = tmp_path / "lamp.env"
    env_file.write_text(f"TOUCHLAMP_EXAMPLE_MQTT__PASSWORD_FILE={secret}\n")
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_LAMP_ID", "lamp-a")
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_MQTT__PORT", "8883")
    settings = load_settings(ExampleSettings, env_file=env_file)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-a-file"
    assert settings.mqtt.port == 8883


def test_unreadable_secret_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_LAMP_ID", "lamp-a")
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_MQTT__PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"cannot read secret file .*missing"):
        load_settings(ExampleSettings)


def test_top_level_secret_from_a_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "touchlamp_example_lamp_id").write_text("lamp-from-file")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_settings(ExampleSettings).lamp_id == "lamp-from-file"


def test_overrides_win_and_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHLAMP_EXAMPLE_LAMP_ID", "lamp-a")
    assert load_settings(ExampleSettings, lamp_id="lamp-b").lamp_id == "lamp-b"
    with pytest.raises(SettingsError, match=r"the command line \(lamp_id\)"):
        load_settings(ExampleSettings, lamp_id="B")
