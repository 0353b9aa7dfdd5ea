"""``touchlamp device enroll`` run by hand: the next step names the settings file it wrote, and
each lamp gets a state directory of its own (two lamps on one machine must not share one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from touchlamp.cli import main
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.protocol import Enrollment, encode_token


def token(lamp: str) -> str:
    return encode_token(
        Enrollment(lamp=lamp, password="s3cret-pass-word-0123456789", host="127.0.0.1", port=1883)
    )


@pytest.fixture(autouse=True)
def _own_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_the_next_steps_name_the_env_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "kitchen.env"
    assert main(["device", "enroll", token("lamp-kitchen"), "--env-file", str(env_file)]) == 0
    state = tmp_path / "state" / "touchlamp" / "lamp-kitchen"
    assert capsys.readouterr().out.splitlines()[-3:] == [
        f"The lamp keeps its state (queued touches, colour) in {state}.",
        f"Start the lamp: touchlamp device run --env-file {env_file}",
        f"then pair it: touchlamp pair new --env-file {env_file}",
    ]


def test_two_lamps_enrolled_on_one_machine_get_their_own_state_directories(
    tmp_path: Path,
) -> None:
    files = [tmp_path / "kitchen.env", tmp_path / "studio.env"]
    for lamp, env_file in zip(("lamp-kitchen", "lamp-studio"), files, strict=True):
        assert main(["device", "enroll", token(lamp), "--env-file", str(env_file)]) == 0
    kitchen, studio = (load_settings(DeviceSettings, env_file=path) for path in files)
    assert kitchen.state_dir == tmp_path / "state" / "touchlamp" / "lamp-kitchen"
    assert studio.state_dir == tmp_path / "state" / "touchlamp" / "lamp-studio"


def test_enrolling_an_existing_file_again_keeps_the_state_its_lamp_used(tmp_path: Path) -> None:
    """A file from before (no STATE_DIR in it) keeps the lamp's outbox where it was."""
    env_file = tmp_path / "device.env"
    env_file.write_text("TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN=27\n")
    env_file.chmod(0o600)
    assert main(["device", "enroll", token("lamp-a"), "--env-file", str(env_file)]) == 0
    assert "STATE_DIR" not in env_file.read_text()
    assert load_settings(DeviceSettings, env_file=env_file).state_dir == (
        tmp_path / "state" / "touchlamp"
    )
