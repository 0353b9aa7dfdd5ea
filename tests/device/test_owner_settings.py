"""The owner's settings: the lamp's own file above the env file, ``device show`` and ``device set``
on a stopped lamp (its files) and on a running one (through its control socket, applied at once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.world import BrokerLike, World
from tests.support.waiting import wait_until
from touchlamp.cli import main
from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.lamp_file import LAMP_FILE
from touchlamp.config.looks import LookSettings

AMBER = "#ff8c1a"
BLUE = "#3c78ff"


@pytest.fixture(autouse=True)
def _no_device_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)


def _env_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "device.env"
    path.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n"
        + "".join(f"{line}\n" for line in lines)
    )
    return path


def _lamp_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / LAMP_FILE


# -- the file and its layering ---------------------------------------------------------------------
def test_the_lamps_file_wins_over_the_env_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = _env_file(
        tmp_path,
        "TOUCHLAMP_DEVICE_LOOKS__GLOW__FADE_SECONDS=5",
        "TOUCHLAMP_DEVICE_LOOKS__GLOW__BREATHS=2",
    )
    monkeypatch.setenv("TOUCHLAMP_DEVICE_NAME", "From the environment")
    _lamp_file(tmp_path).parent.mkdir()
    _lamp_file(tmp_path).write_text(
        json.dumps({"name": "Kitchen", "looks": {"glow": {"fade_seconds": 90}}})
    )

    settings = load_settings(DeviceSettings, env_file=env_file)

    assert settings.name == "Kitchen"
    assert settings.looks.glow.fade_seconds == 90
    assert settings.looks.glow.breaths == 2  # the env file's, the lamp's file does not set it


def test_the_lamps_file_keeps_a_groups_other_values_given_to_the_constructor(
    tmp_path: Path,
) -> None:
    (tmp_path / LAMP_FILE).write_text(json.dumps({"looks": {"glow": {"fade_seconds": 90}}}))

    settings = DeviceSettings(
        lamp_id="lamp-a", state_dir=tmp_path, looks=LookSettings(hold_seconds=5)
    )

    assert settings.looks.glow.fade_seconds == 90
    assert settings.looks.hold_seconds == 5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON"),
        ('{"mqtt": {"host": "evil.example"}}', "sets mqtt.host"),
        ("[1, 2]", "must hold a JSON object"),
    ],
)
def test_a_damaged_or_overreaching_lamp_file_stops_start_up_with_exit_2(
    tmp_path: Path, content: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = _env_file(tmp_path)
    _lamp_file(tmp_path).parent.mkdir()
    _lamp_file(tmp_path).write_text(content)

    with pytest.raises(SettingsError, match=expected):
        load_settings(DeviceSettings, env_file=env_file)
    assert main(["device", "show", "--env-file", str(env_file)]) == 2
    assert str(_lamp_file(tmp_path)) in capsys.readouterr().err


# -- device show / set on a stopped lamp -----------------------------------------------------------
def test_show_says_where_each_value_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = _env_file(tmp_path, "TOUCHLAMP_DEVICE_LOOKS__GLOW__BREATHS=2")

    assert (
        main(["device", "set", "looks.glow.fade_seconds", "120", "--env-file", str(env_file)]) == 0
    )
    capsys.readouterr()
    assert main(["device", "show", "--env-file", str(env_file)]) == 0

    out = capsys.readouterr().out
    assert "Lamp lamp-a" in out
    assert "Not running" in out
    lines = {line.split("=")[0].strip(): line for line in out.splitlines() if " = " in line}
    assert "120.0" in lines["looks.glow.fade_seconds"]
    assert str(_lamp_file(tmp_path)) in lines["looks.glow.fade_seconds"]
    assert "the env file" in lines["looks.glow.breaths"]
    assert "TOUCHLAMP_DEVICE_LOOKS__GLOW__BREATHS" in lines["looks.glow.breaths"]
    assert "the default" in lines["looks.ambient_level"]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["looks.glow.fade_secs", "60"], "'looks.glow.fade_secs' is not a setting"),
        (["mqtt.host", "evil.example"], "'mqtt.host' is not a setting"),
        (["looks.glow.fade_seconds", "-1"], "looks.glow.fade_seconds = '-1' is not accepted"),
        (["looks.glow.fade_seconds", "soon"], "looks.glow.fade_seconds = 'soon'"),
        (["quiet_hours.start", "25:00"], "quiet_hours.start = '25:00'"),
        (["color", "orange"], "color = 'orange' is not a colour: write #rrggbb"),
        (["name", "x" * 41], "name = "),
        # One bad value among good ones: none of them is taken.
        (["looks.glow.breaths", "3", "looks.max_brightness", "2"], "looks.max_brightness = '2'"),
        (["looks.glow.breaths"], "'looks.glow.breaths' has no value"),
    ],
)
def test_set_with_a_bad_key_or_value_exits_2_and_changes_nothing(
    tmp_path: Path, pairs: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = _env_file(tmp_path)
    assert (
        main(["device", "set", "looks.glow.fade_seconds", "120", "--env-file", str(env_file)]) == 0
    )
    before = _lamp_file(tmp_path).read_bytes()
    capsys.readouterr()

    assert main(["device", "set", *pairs, "--env-file", str(env_file)]) == 2

    assert expected in capsys.readouterr().err
    assert _lamp_file(tmp_path).read_bytes() == before
    assert not (tmp_path / "state" / "color").exists()


def test_set_keeps_the_values_for_the_next_start(tmp_path: Path) -> None:
    env_file = _env_file(tmp_path)
    args = ["quiet_hours.enabled", "true", "quiet_hours.start", "21:30", "color", "#3C78FF"]

    assert main(["device", "set", *args, "--env-file", str(env_file)]) == 0

    settings = load_settings(DeviceSettings, env_file=env_file)
    assert settings.quiet_hours.enabled
    assert settings.quiet_hours.start.isoformat() == "21:30:00"
    assert (tmp_path / "state" / "color").read_text().strip() == BLUE


# -- on a running lamp -----------------------------------------------------------------------------
@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


def test_set_on_a_running_lamp_applies_at_once_and_show_names_its_group(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    lamps = (
        world.lamp("lamp-a", color=AMBER, name="Kitchen"),
        world.lamp("lamp-b", color=BLUE, name="Grandma"),
    )
    world.pair("lamp-a", "lamp-b")
    env_file = world.env_file(lamps[0])
    with world.relay(), world.simulator(*lamps) as simulator:
        a = simulator.lamp("lamp-a")
        wait_until(lambda: all(lamp.agent.online for lamp in simulator.lamps), "both online")
        wait_until(lambda: a.agent.partners == ("lamp-b",), "lamp A knows its partner")

        assert (
            main(["device", "set", "looks.glow.fade_seconds", "7", "--env-file", str(env_file)])
            == 0
        )
        wait_until(lambda: a.agent.settings.looks.glow.fade_seconds == 7, "the lamp took it")
        assert main(["device", "set", "looks.glow.breaths", "1", "--env-file", str(env_file)]) == 0
        wait_until(lambda: a.agent.settings.looks.glow.breaths == 1, "the lamp took it")
        assert a.agent.settings.looks.glow.fade_seconds == 7  # the first change is kept

        capsys.readouterr()
        assert main(["device", "set", "looks.glow.breaths", "-3", "--env-file", str(env_file)]) == 2
        assert "looks.glow.breaths = '-3'" in capsys.readouterr().err
        assert a.agent.settings.looks.glow.breaths == 1

        assert main(["device", "show", "--env-file", str(env_file)]) == 0
        out = capsys.readouterr().out
        assert "Kitchen" in out
        assert AMBER in out
        assert "Connected." in out
        assert "with Grandma (lamp-b, #3c78ff): online" in out
    restarted = load_settings(DeviceSettings, env_file=env_file)
    assert restarted.looks.glow.fade_seconds == 7
    assert restarted.looks.glow.breaths == 1


# -- the lamp's name and colour, and its group -----------------------------------------------------
def _without(settings: DeviceSettings, *fields: str) -> DeviceSettings:
    """``settings`` as if ``fields`` had never been set (their defaults, not given)."""
    given = settings.model_dump(exclude=set(fields), exclude_unset=True)
    return DeviceSettings(**given)


def test_the_operators_name_and_colour_are_the_lamps_first_ones(world: World) -> None:
    # `relay lamp add lamp-a --name Studio --color #3c78ff`; the lamp's settings name neither
    # (as DEPLOY.md's lamps): the lamp must not announce its default orange over them.
    a = _without(world.lamp("lamp-a", color=BLUE, name="Studio"), "color", "name")
    b = world.lamp("lamp-b", color=AMBER, name="Kitchen")
    world.pair("lamp-a", "lamp-b")
    with world.relay(), world.simulator(a, b) as simulator:
        lamp_a, lamp_b = simulator.lamp("lamp-a"), simulator.lamp("lamp-b")
        wait_until(lambda: lamp_a.agent.color == BLUE, "lamp A takes the operator's colour")
        wait_until(
            lambda: (
                [(m.name, m.color) for m in lamp_b.agent.status().members] == [("Studio", BLUE)]
            ),
            "lamp B sees Studio in blue",
        )
        stored = world.store.get_lamp("lamp-a")
        assert stored is not None
        assert (stored.name, stored.color) == ("Studio", BLUE)
        assert (a.state_dir / "color").read_text().strip() == BLUE
    # Next start: the colour is the lamp's own now.
    with world.relay(), world.simulator(a, b) as simulator:
        assert simulator.lamp("lamp-a").agent.color == BLUE


def test_a_name_and_colour_changed_on_the_lamp_reach_the_relay_and_the_group(
    world: World,
) -> None:
    a = world.lamp("lamp-a", color=AMBER, name="Kitchen")
    b = world.lamp("lamp-b", color=BLUE, name="Grandma")
    world.pair("lamp-a", "lamp-b")
    with world.relay(), world.simulator(a, b) as simulator:
        lamp_b = simulator.lamp("lamp-b")
        wait_until(lambda: bool(lamp_b.agent.status().members), "lamp B knows its group")

        simulator.lamp("lamp-a").owner.change({"name": "Attic", "color": "#22c7c7"})

        wait_until(
            lambda: (
                [(m.name, m.color) for m in lamp_b.agent.status().members] == [("Attic", "#22c7c7")]
            ),
            "lamp B sees the new name and colour",
        )
        stored = world.store.get_lamp("lamp-a")
        assert stored is not None
        assert (stored.name, stored.color) == ("Attic", "#22c7c7")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_set_by_root_on_a_stopped_service_leaves_files_the_service_can_read(
    tmp_path: Path,
) -> None:
    # The service's state directory belongs to its dynamic user; `sudo touchlamp device set`
    # must not leave root-owned 0600 files there that the lamp cannot read when it starts.
    env_file = _env_file(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 61234, 61234)

    args = ["looks.glow.breaths", "2", "color", "#3c78ff", "--env-file", str(env_file)]
    assert main(["device", "set", *args]) == 0

    for name in (LAMP_FILE, "color"):
        info = (state / name).stat()
        assert (info.st_uid, info.st_gid) == (61234, 61234), name
