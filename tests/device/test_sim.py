"""Simulated lamps: pins read back as light, and ``touchlamp pair`` through a running lamp."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.world import BrokerLike, World, same_hue, wait_until
from touchlamp.cli import main
from touchlamp.config.device import DeviceSettings, HardwareSettings
from touchlamp.device.sim import SimulatedLamp, Simulator, SimulatorError

AMBER = "#ff8c1a"
BLUE = "#3c78ff"


@pytest.fixture(autouse=True)
def _no_device_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


def test_lamps_need_their_own_ids_and_state(tmp_path: Path) -> None:
    one = DeviceSettings(lamp_id="lamp-a", state_dir=tmp_path / "a")
    with pytest.raises(SimulatorError, match="own lamp id"):
        Simulator(lamps=[one, one.model_copy(update={"state_dir": tmp_path / "b"})])
    with pytest.raises(SimulatorError, match="own state directory"):
        Simulator(lamps=[one, one.model_copy(update={"lamp_id": "lamp-b"})])


def test_a_lamp_the_simulator_cannot_press_is_refused(tmp_path: Path) -> None:
    lamp = DeviceSettings(
        lamp_id="lamp-a", state_dir=tmp_path, hardware=HardwareSettings(touch_kind="mpr121")
    )
    with pytest.raises(SimulatorError, match="TOUCH_KIND=ttp223"):
        Simulator(lamps=[lamp])


def test_a_common_anode_led_is_read_as_light_not_pin_levels(world: World) -> None:
    """A common-anode LED lights a channel by pulling its pin low, so its pins idle high: read
    without inverting them, a dark lamp would look white and amber would look blue."""
    settings = world.lamp("lamp-a", color=AMBER)
    anode = settings.model_copy(
        update={"hardware": settings.hardware.model_copy(update={"rgb_common_anode": True})}
    )
    with world.simulator(anode) as simulator:
        lamp = simulator.lamp("lamp-a")
        assert lamp.led() == (0.0, 0.0, 0.0)
        lamp.press()
        lamp.release()
        wait_until(lambda: same_hue(lamp.led(), AMBER, gamma=2.2), "the tap's amber feedback")


def _wait_online(lamp: SimulatedLamp) -> None:
    wait_until(lambda: lamp.agent.online, f"{lamp.lamp_id} online")


def test_pair_commands_go_through_the_running_lamps(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    a_env, b_env = world.env_file(a), world.env_file(b)
    with world.relay(), world.simulator(a, b) as simulator:
        for lamp in simulator.lamps:
            _wait_online(lamp)
        connections_before = [lamp.link for lamp in simulator.lamps]

        assert main(["pair", "status", "--env-file", str(a_env)]) == 0
        assert "Not paired" in capsys.readouterr().out

        assert main(["pair", "new", "--env-file", str(a_env)]) == 0
        out = capsys.readouterr().out
        match = re.search(r"touchlamp pair join (\S+)", out)
        assert match, out

        assert main(["pair", "join", match.group(1), "--env-file", str(b_env)]) == 0
        assert "now with lamp-a" in capsys.readouterr().out

        assert main(["pair", "status", "--env-file", str(a_env)]) == 0
        assert "with lamp-b" in capsys.readouterr().out

        # Lamp A's touch now reaches lamp B.
        simulator.press("lamp-a")
        simulator.release("lamp-a")
        lamp_b = simulator.lamp("lamp-b")
        wait_until(lambda: same_hue(lamp_b.led(), AMBER, gamma=2.2), "lamp B glowing in amber")
        # Neither lamp was kicked off the broker by the commands.
        assert [lamp.link for lamp in simulator.lamps] == connections_before
        assert all(lamp.agent.online for lamp in simulator.lamps)


def test_pair_refusals_are_plain_sentences(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a = world.lamp("lamp-a", color=AMBER)
    a_env = world.env_file(a)
    with world.relay(), world.simulator(a) as simulator:
        _wait_online(simulator.lamp("lamp-a"))

        assert main(["pair", "leave", "--env-file", str(a_env)]) == 1
        assert "not in a group" in capsys.readouterr().err

        assert main(["pair", "join", "ABCDEFGH", "--env-file", str(a_env)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("touchlamp: ")
        assert "code" in err

        assert main(["pair", "join", "no!", "--env-file", str(a_env)]) == 2
        assert "not a pairing code" in capsys.readouterr().err


def test_pair_connects_by_itself_when_no_lamp_runs(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a_env = world.env_file(world.lamp("lamp-a", color=AMBER))
    with world.relay():
        assert main(["pair", "status", "--env-file", str(a_env)]) == 0
    assert "Not paired" in capsys.readouterr().out


def test_pair_says_so_when_the_relay_does_not_answer(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a_env = world.env_file(world.lamp("lamp-a", color=AMBER))
    assert main(["pair", "status", "--timeout", "1", "--env-file", str(a_env)]) == 1
    assert "is the relay running" in capsys.readouterr().err
