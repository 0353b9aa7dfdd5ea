"""A lamp installed without a token (issue 13: "a lamp not yet enrolled offers to paste its
token"): ``touchlamp device run`` on gpiozero's mock pins, the broker fixture and the real
relay. It serves its page, shows the "not enrolled" look, takes a token from its owner only,
keeps it in the state directory, and runs as the enrolled lamp without being restarted."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.test_owner_page import Browser
from tests.e2e.world import BrokerLike, World
from tests.support.ports import free_port
from tests.support.waiting import WAIT, wait_until
from touchlamp.cli import main
from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.enrolment_file import ENROLMENT_FILE, write_enrolment_file
from touchlamp.device.agent import LampAgent
from touchlamp.device.clock import SystemClock
from touchlamp.device.hardware import mock_pin_factory, open_light_output, open_touch_input
from touchlamp.device.lamp_board import FrameTap, LampBoard
from touchlamp.device.owner_auth import OwnerAuth
from touchlamp.device.owner_page import OwnerLamp
from touchlamp.device.owner_settings import OwnerSettings
from touchlamp.device.unenrolled import (
    NOT_ENROLLED_EVENT,
    UNENROLLED_ID,
    Enroller,
    UnenrolledLink,
    load_or_unenrolled,
)
from touchlamp.device.web import WebServer
from touchlamp.protocol import Enrollment, encode_token

TOUCHLAMP = Path(sys.executable).with_name("touchlamp")
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _no_device_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)


def claimed_by_its_owner(state_dir: Path, *, password: str = PASSWORD) -> None:
    """The owner's claim, as the page makes it: a password, then a hold on the lamp."""
    auth = OwnerAuth(state_dir=state_dir, now=time.monotonic)
    claim = auth.begin_claim(password)
    assert auth.held(2.0)
    auth.wait_claim(claim)


class UnenrolledLamp:
    """``touchlamp device run`` with an env file that names only its state directory."""

    def __init__(self, directory: Path) -> None:
        self.state_dir = directory / "state"
        self.env_file = directory / "device.env"
        directory.mkdir(parents=True, exist_ok=True)
        self.env_file.write_text(f"TOUCHLAMP_DEVICE_STATE_DIR={self.state_dir}\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        environment = {
            **os.environ,
            "GPIOZERO_PIN_FACTORY": "mock",
            "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
        }
        self.process = subprocess.Popen(
            [
                *(str(TOUCHLAMP), "device", "run", "--env-file", str(self.env_file)),
                *("--web-host", "127.0.0.1", "--web-port", str(self.port)),
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> tuple[int, str]:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=WAIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(WAIT)
        return self.process.returncode, err


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


def token_for(world: World, lamp_id: str) -> str:
    """What ``touchlamp relay lamp add`` prints for a lamp the broker and the relay know."""
    settings = world.lamp(lamp_id, color="#3c78ff")
    assert settings.mqtt.password is not None
    return encode_token(
        Enrollment(
            lamp=lamp_id,
            password=settings.mqtt.password.get_secret_value(),
            host=settings.mqtt.host,
            port=settings.mqtt.effective_port,
            root=settings.mqtt.topic_root,
        )
    )


def _answers(browser: Browser, lamp_id: str) -> bool:
    try:
        return browser.get(lamp_id).status == 200
    except OSError:
        return False


def _led(browser: Browser) -> list[float]:
    lamps = browser.request("GET", "/api/lamps").data
    return list(next(item for item in lamps if item["id"] == UNENROLLED_ID)["led"])


def test_a_lamp_without_a_token_is_unenrolled_but_a_bad_id_still_stops_it(tmp_path: Path) -> None:
    env_file = tmp_path / "device.env"
    env_file.write_text(f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n")
    assert load_or_unenrolled(env_file).lamp_id == UNENROLLED_ID

    env_file.write_text(
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\nTOUCHLAMP_DEVICE_LAMP_ID='no spaces'\n"
    )
    with pytest.raises(SettingsError, match="lamp_id"):
        load_or_unenrolled(env_file)


def test_an_unenrolled_lamp_serves_its_page_takes_its_owners_token_and_connects(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lamp = UnenrolledLamp(tmp_path / "new-lamp")
    claimed_by_its_owner(lamp.state_dir)
    token = token_for(world, "lamp-a")
    with world.relay():
        lamp.start()
        try:
            owner, stranger = Browser(lamp.url), Browser(lamp.url)
            wait_until(lambda: _answers(stranger, UNENROLLED_ID), "the unenrolled lamp's page")
            look = stranger.get(UNENROLLED_ID)
            assert look.data["enrolled"] is False
            assert look.data["lamp"]["online"] is False

            # The LED: the "not enrolled" look, violet (blue above green), not dark.
            wait_until(lambda: max(_led(stranger)) > 0.01, "the not-enrolled look shows")
            wait_until(lambda: _led(stranger)[2] > _led(stranger)[1], "the look is violet")

            # From a shell too, through its control socket: `device show` names it.
            assert main(["device", "show", "--env-file", str(lamp.env_file)]) == 0
            assert f"Lamp {UNENROLLED_ID}" in capsys.readouterr().out

            # Only the owner: a stranger's token is refused, and nothing is written.
            refused = stranger.post(UNENROLLED_ID, "enrol", {"token": token})
            assert refused.status == 403
            assert not (lamp.state_dir / ENROLMENT_FILE).exists()

            assert owner.post(UNENROLLED_ID, "login", {"password": PASSWORD}).status == 200
            # A bad token: a clear message, nothing changed.
            bad = owner.post(UNENROLLED_ID, "enrol", {"token": token[:-6]})
            assert bad.status == 400, bad.data
            assert bad.data["field"] == "token"
            assert "nothing was changed" in bad.data["error"]
            assert not (lamp.state_dir / ENROLMENT_FILE).exists()

            good = owner.post(UNENROLLED_ID, "enrol", {"token": token})
            assert good.status == 200, good.data
            assert good.data["enrolled"] == "lamp-a"
            assert good.data["page"] == "/lamp/lamp-a/"
            kept = lamp.state_dir / ENROLMENT_FILE
            assert stat.S_IMODE(kept.stat().st_mode) == 0o600
            assert json.loads(kept.read_text())["lamp_id"] == "lamp-a"

            # Without a restart by anyone: the same process runs as lamp-a, online, on the
            # same address; the owner's claim holds (a new sign-in: the page's id changed).
            wait_until(lambda: _answers(owner, "lamp-a"), "lamp-a's page on the same port")
            wait_until(lambda: owner.get("lamp-a").data["lamp"]["online"], "lamp-a connected")
            shown = owner.get("lamp-a").data
            assert shown["enrolled"] is True
            assert shown["claimed"] is True
            assert lamp.process is not None
            assert lamp.process.poll() is None

            # Its control socket and its settings: `pair` and every other command find it.
            assert main(["pair", "status", "--env-file", str(lamp.env_file)]) == 0
            assert "Not paired" in capsys.readouterr().out
            settings = load_settings(DeviceSettings, env_file=lamp.env_file)
            assert settings.lamp_id == "lamp-a"
            assert settings.mqtt.port == world.broker.port
        finally:
            code, err = lamp.stop()
    assert code == 0, err
    assert "not enrolled yet" in err
    assert "enrolled as lamp lamp-a" in err


def test_device_enroll_replaces_a_token_pasted_on_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The pasted token is layered above the env file: left in place, it would silently win
    # over the newer `device enroll`.
    state = tmp_path / "state"
    env_file = tmp_path / "device.env"
    env_file.write_text(f"TOUCHLAMP_DEVICE_STATE_DIR={state}\n")
    old = Enrollment(lamp="lamp-old", password="p" * 20, host="old.example.net", port=1883)
    write_enrolment_file(state, old)
    assert load_settings(DeviceSettings, env_file=env_file).lamp_id == "lamp-old"

    new = Enrollment(lamp="lamp-new", password="q" * 20, host="new.example.net", port=8883)
    assert main(["device", "enroll", encode_token(new), "--env-file", str(env_file)]) == 0

    assert "Removed" in capsys.readouterr().out
    assert not (state / ENROLMENT_FILE).exists()
    settings = load_settings(DeviceSettings, env_file=env_file)
    assert (settings.lamp_id, settings.mqtt.host) == ("lamp-new", "new.example.net")


def test_before_enrolment_the_owner_claims_the_lamp_with_a_hold_as_ever(tmp_path: Path) -> None:
    # The parts `device run` puts together for a lamp without a token (device/lamp_process.py),
    # on mock pins this process can press: the claim waits for a hold on the lamp's own sensor.
    env_file = tmp_path / "device.env"
    env_file.write_text(
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n"
        "TOUCHLAMP_DEVICE_LOOKS__HOLD_SECONDS=1.0\n"
    )
    settings = load_or_unenrolled(env_file)
    assert settings.lamp_id == UNENROLLED_ID
    pins = mock_pin_factory()
    light = FrameTap(open_light_output(settings.hardware, pin_factory=pins))
    agent = LampAgent(
        settings=settings,
        touch=open_touch_input(settings.hardware, pin_factory=pins),
        light=light,
        link=lambda _sink: UnenrolledLink(),
        clock=SystemClock(),
    )
    agent.post(NOT_ENROLLED_EVENT)
    auth = OwnerAuth(state_dir=settings.state_dir, now=time.monotonic)
    enroller = Enroller(state_dir=settings.state_dir, env_file=env_file)
    owner_lamp = OwnerLamp(
        agent=agent,
        owner=OwnerSettings(lamp=agent, env_file=env_file),
        link=UnenrolledLink(),
        auth=auth,
        broker=(settings.mqtt.host, settings.mqtt.effective_port),
        enroller=enroller,
    )
    board = LampBoard(agent=agent, owner=owner_lamp)
    light.listeners.append(board.changed)
    token = encode_token(
        Enrollment(lamp="lamp-a", password="p" * 20, host="mqtt.example.net", port=8883)
    )
    with agent, WebServer(board=board) as server:  # the agent starts here; both stop on exit
        browser = Browser(server.start())
        assert browser.post(UNENROLLED_ID, "enrol", {"token": token}).status == 403

        answers: list[int] = []
        asking = threading.Thread(
            target=lambda: answers.append(
                browser.post(UNENROLLED_ID, "claim", {"password": PASSWORD}).status
            )
        )
        asking.start()
        wait_until(lambda: auth.claim_waiting, "the claim waits for a hold")
        touch_pin = pins.pin(settings.hardware.touch_pin)
        touch_pin.drive_high()
        time.sleep(1.5)
        touch_pin.drive_low()
        asking.join(WAIT)
        assert answers == [200]

        answer = browser.post(UNENROLLED_ID, "enrol", {"token": token})
        assert answer.status == 200, answer.data
        assert enroller.enrolled.is_set()
        assert load_settings(DeviceSettings, env_file=env_file).lamp_id == "lamp-a"
        # Once: a second token before the restart is refused, the first one stays.
        again = browser.post(UNENROLLED_ID, "enrol", {"token": token})
        assert again.status == 400
        assert "just enrolled" in again.data["error"]
