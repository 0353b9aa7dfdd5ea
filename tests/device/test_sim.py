"""Simulated lamps: pins read back as light, and ``touchlamp pair`` through a running lamp."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.world import BrokerLike, World, same_hue
from tests.support.waiting import WAIT, wait_until
from touchlamp.cli import main
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings, HardwareSettings
from touchlamp.device.looks import Rgb
from touchlamp.device.sim import SimulatedLamp, Simulator, SimulatorError

TOUCHLAMP = Path(sys.executable).with_name("touchlamp")
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


def test_a_simulated_lamp_loads_no_relay_broker_or_web_framework() -> None:
    """What ``device run --simulate`` imports (the command's parser, then simulate.py) leaves
    out the demo's relay, store and broker launcher: a simulated lamp is measured as a lamp
    (bench/footprint.py), and those cost it 3 MB of RSS; a web framework cost it 10 MB."""
    program = (
        "import sys\n"
        "from touchlamp.cli import build_parser\n"
        "build_parser('device')\n"
        "import touchlamp.device.simulate\n"
        "print('\\n'.join(sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=WAIT
    ).stdout.split()
    assert "touchlamp.device.web" in loaded
    unwanted = ("touchlamp.server", "touchlamp.broker", "touchlamp.demo", "aiohttp")
    assert [name for name in loaded if name.startswith(unwanted)] == []


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


def test_a_simulated_lamp_does_not_keep_its_pins_history(world: World) -> None:
    """gpiozero's mock pins record every state change; a simulator runs for days."""
    settings = world.lamp("lamp-a", color=AMBER)
    with world.simulator(settings) as simulator:
        lamp = simulator.lamp("lamp-a")
        frames = 0

        def count_frames() -> None:
            nonlocal frames
            frames += 1

        unwatch = simulator.watch(count_frames)
        try:
            for _ in range(3):
                lamp.press()
                lamp.release()
                wait_until(lambda: same_hue(lamp.led(), AMBER, gamma=2.2), "the tap's feedback")
                wait_until(lambda: max(lamp.led()) < 0.001, "the feedback to fade")
        finally:
            unwatch()
        assert frames > 30  # what would have piled up
        assert lamp.pin_history_length() <= 8  # the current state of 4 pins, a press at most


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

        # Lamp A's touch now reaches lamp B (once A has its new group state: before that, the
        # lamp would show "not paired" and keep the touch to itself).
        lamp_a = simulator.lamp("lamp-a")
        wait_until(lambda: lamp_a.agent.partners == ("lamp-b",), "lamp A hears it is paired")
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


def _serving(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"touch them at (http://\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"the simulator ended: {process.communicate()}")


def _lamps(url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(url + "api/lamps", timeout=WAIT) as response:  # noqa: S310  loopback
        return {lamp["id"]: lamp for lamp in json.load(response)}


def _post(url: str) -> None:
    request = urllib.request.Request(url, method="POST")  # noqa: S310  loopback
    with urllib.request.urlopen(request, timeout=WAIT):  # noqa: S310  loopback
        pass


@pytest.mark.parametrize("command", ["sim", "device-run"])
def test_enrolled_lamps_run_simulated_from_their_settings_files(world: World, command: str) -> None:
    """``touchlamp sim --env-file A --env-file B`` (and ``device run --simulate`` for one lamp)
    serve the page for lamps enrolled with a running relay."""
    a_env = world.env_file(world.lamp("lamp-a", color=AMBER))
    b_env = world.env_file(world.lamp("lamp-b", color=BLUE))
    world.pair("lamp-a", "lamp-b")
    with world.relay(), contextlib.ExitStack() as running:
        if command == "sim":
            args = ["sim", "--env-file", str(a_env), "--env-file", str(b_env)]
            watched = "lamp-b"
        else:
            args = ["device", "run", "--simulate", "--env-file", str(a_env)]
            watched = "lamp-a"  # alone on the page: its own tap feedback
            b_settings = load_settings(DeviceSettings, env_file=b_env)
            running.enter_context(world.simulator(b_settings))
        process = subprocess.Popen(
            [str(TOUCHLAMP), *args, "--web-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = _serving(process)
            wait_until(lambda: all(lamp["online"] for lamp in _lamps(url).values()), "online")
            _post(url + "api/lamps/lamp-a/press")
            _post(url + "api/lamps/lamp-a/release")
            wait_until(
                lambda: same_hue(Rgb(*_lamps(url)[watched]["led"]), AMBER, gamma=2.2),
                f"{watched} glowing in amber",
            )
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=WAIT)
            assert process.returncode == 0, err
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(WAIT)
