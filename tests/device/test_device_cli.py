"""``touchlamp device enroll``, ``selftest`` and ``run``: files, pins, sockets and messages."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.world import BrokerLike, World
from tests.support.waiting import WAIT
from touchlamp.cli import main
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings, HardwareSettings
from touchlamp.config.looks import LookSettings
from touchlamp.device.control import (
    CONTROL_SOCKET,
    ControlError,
    ControlServer,
    NoLampRunningError,
    ask_running_lamp,
)
from touchlamp.device.enroll import write_enrollment
from touchlamp.device.hardware import mock_pin_factory
from touchlamp.device.link import LampLink
from touchlamp.device.selftest import run_selftest
from touchlamp.protocol import Enrollment, PairAction, PairRequest, decode_token, encode_token

TOUCHLAMP = Path(sys.executable).with_name("touchlamp")
PASSWORD = "s3cret-pass-word-0123456789"
TOKEN = encode_token(
    Enrollment(lamp="lamp-a", password=PASSWORD, host="mqtt.example.net", port=8883, tls=True)
)


@pytest.fixture(autouse=True)
def _no_device_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)


def test_enroll_writes_a_private_settings_file_the_lamp_can_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "etc" / "device.env"

    assert main(["device", "enroll", TOKEN, "--env-file", str(env_file)]) == 0

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings(DeviceSettings, env_file=env_file)
    assert settings.lamp_id == "lamp-a"
    assert settings.mqtt.host == "mqtt.example.net"
    assert settings.mqtt.effective_port == 8883
    assert settings.mqtt.tls
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == PASSWORD
    out = capsys.readouterr().out
    assert "Enrolled lamp lamp-a" in out
    assert "mode 0600" in out
    assert PASSWORD not in out


def test_enrolling_again_changes_the_login_and_keeps_the_owners_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "device.env"
    env_file.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=old-lamp\n"
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD=old-password\n"
        "# my wiring\n"
        "TOUCHLAMP_DEVICE_HARDWARE__TOUCH_PIN=22\n"
        "TOUCHLAMP_DEVICE_COLOR='#3366ff'\n"
    )
    env_file.chmod(0o644)
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    token = encode_token(
        Enrollment(lamp="lamp-b", password=PASSWORD, host="h", port=8883, tls=True, ca=ca)
    )

    assert main(["device", "enroll", token, "--env-file", str(env_file)]) == 0

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings(DeviceSettings, env_file=env_file)
    assert settings.lamp_id == "lamp-b"
    assert settings.hardware.touch_pin == 22
    assert settings.color == "#3366ff"
    assert settings.mqtt.ca_file is not None
    assert settings.mqtt.ca_file.read_text() == ca
    assert "old-password" not in env_file.read_text()
    assert "# my wiring" in env_file.read_text()


def test_the_services_settings_file_names_its_state_directory(tmp_path: Path) -> None:
    """So that `touchlamp pair`, run by root, reaches the running service's control socket."""
    env_file = tmp_path / "device.env"
    write_enrollment(decode_token(TOKEN), env_file=env_file, state_dir=Path("/var/lib/touchlamp"))
    assert load_settings(DeviceSettings, env_file=env_file).state_dir == Path("/var/lib/touchlamp")

    env_file.write_text(env_file.read_text() + "TOUCHLAMP_DEVICE_STATE_DIR=/srv/lamp\n")
    write_enrollment(decode_token(TOKEN), env_file=env_file, state_dir=Path("/var/lib/touchlamp"))
    assert load_settings(DeviceSettings, env_file=env_file).state_dir == Path("/srv/lamp")


@pytest.mark.parametrize(
    ("token", "complaint"),
    [
        ("hello", "must start with 'tl1.'"),
        (TOKEN[: len(TOKEN) // 2], "enrollment token"),
    ],
)
def test_a_bad_token_says_what_is_wrong_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token: str, complaint: str
) -> None:
    env_file = tmp_path / "device.env"

    assert main(["device", "enroll", token, "--env-file", str(env_file)]) == 2

    assert complaint in capsys.readouterr().err
    assert not env_file.exists()


class _Assembler(io.StringIO):
    """The person at the bench: notes what the LED shows at each line the self-test prints, and
    touches the sensor when asked."""

    def __init__(self, pins: Any, hardware: HardwareSettings, *, touches: bool) -> None:
        super().__init__()
        self._pins = pins
        self._hardware = hardware
        self._touches = touches
        self.seen: list[tuple[float, float, float]] = []

    def write(self, text: str) -> int:
        hardware = self._hardware
        red, green, blue = (
            float(self._pins.pin(pin).state)
            for pin in (hardware.red_pin, hardware.green_pin, hardware.blue_pin)
        )
        self.seen.append((red, green, blue))
        written = super().write(text)
        if self._touches and text.startswith("Touch the lamp now"):
            pin = self._pins.pin(hardware.touch_pin)
            pin.drive_high()
            pin.drive_low()
        return written


@pytest.mark.parametrize("touches", [True, False])
def test_selftest_cycles_the_colours_and_waits_for_a_touch(touches: bool) -> None:
    hardware = HardwareSettings()
    pins = mock_pin_factory()
    out = _Assembler(pins, hardware, touches=touches)

    works = run_selftest(
        hardware=hardware,
        looks=LookSettings(),
        out=out,
        touch_timeout=0.0 if not touches else 5.0,
        step_seconds=0.0,
        pin_factory=pins,
    )

    assert works is touches
    # The pins as each line was printed: dark, red, green, blue, white, then dark again.
    assert out.seen[:6] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0, 0, 0)]
    text = out.getvalue()
    if touches:
        assert "touched" in text
        assert "work" in text
    else:
        assert "No touch within" in text
        assert "GPIO17" in text


def test_device_run_is_a_well_behaved_systemd_service(
    broker: BrokerLike, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``device run`` on gpiozero's mock pins (chosen through gpiozero's own environment
    variables): it tells systemd it is ready, pings the watchdog from its loop, answers
    ``touchlamp pair`` through its control socket, and stops cleanly on SIGTERM."""
    world = World(broker, tmp_path)
    notify_path = tmp_path / "notify.sock"
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
        world.relay(),
    ):
        notify.bind(str(notify_path))
        notify.settimeout(WAIT)
        env_file = world.env_file(world.lamp("lamp-a", color="#ff8c1a"))
        environment = {
            **os.environ,
            "GPIOZERO_PIN_FACTORY": "mock",
            "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
            "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": "200000",
        }
        process = subprocess.Popen(
            # The lamp's own page on a free loopback port (a real lamp's default is 0.0.0.0:8080).
            [
                *(str(TOUCHLAMP), "device", "run", "--env-file", str(env_file)),
                *("--web-host", "127.0.0.1", "--web-port", "0"),
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            messages = [notify.recv(4096).decode() for _ in range(4)]
            assert any(message.startswith("READY=1") for message in messages), messages
            assert messages.count("WATCHDOG=1") >= 2, messages

            assert main(["pair", "status", "--env-file", str(env_file)]) == 0
            assert "Not paired" in capsys.readouterr().out

            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=WAIT)
            assert process.returncode == 0, err
            assert "the lamp's page is at http://127.0.0.1:" in err
            rest = []
            with contextlib.suppress(TimeoutError):
                notify.settimeout(0.5)
                while True:
                    rest.append(notify.recv(4096).decode())
            assert any(message.startswith("STOPPING=1") for message in rest)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(WAIT)
            world.close()


def test_a_second_service_on_the_same_lamp_is_refused(tmp_path: Path) -> None:
    """Two services would fight over one lamp's MQTT session; a stale socket (a killed
    service) is no obstacle."""
    link = LampLink(
        lamp_id="lamp-a", password="p" * 22, sink=lambda _event: None, state_dir=tmp_path
    )
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / CONTROL_SOCKET))
    stale.close()
    first = ControlServer(state_dir=tmp_path, link=link)
    first.start()
    try:
        with pytest.raises(ControlError, match="already runs"):
            ControlServer(state_dir=tmp_path, link=link).start()
    finally:
        first.stop()
        link.stop()
    assert not (tmp_path / CONTROL_SOCKET).exists()
    with pytest.raises(NoLampRunningError):
        ask_running_lamp(tmp_path, PairRequest(action=PairAction.STATUS))


def test_a_state_directory_deeper_than_a_socket_path_still_gets_its_control_socket(
    tmp_path: Path,
) -> None:
    """A Unix socket's path holds at most 107 bytes; a lamp whose state directory lies deeper
    (a long home directory, a test's temporary one) still listens, and commands still reach it."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(deep / CONTROL_SOCKET)) > 108
    link = LampLink(lamp_id="lamp-a", password="p" * 22, sink=lambda _event: None, state_dir=deep)
    server = ControlServer(state_dir=deep, link=link)
    server.start()
    try:
        assert (deep / CONTROL_SOCKET).is_socket()
        with pytest.raises(ControlError, match="already runs"):
            ControlServer(state_dir=deep, link=link).start()
        # The running lamp answers through the socket: its link is not connected, so it says so.
        with pytest.raises(ControlError) as answered:
            ask_running_lamp(deep, PairRequest(action=PairAction.STATUS), timeout=5)
        assert not isinstance(answered.value, NoLampRunningError)
    finally:
        server.stop()
        link.stop()
    assert not (deep / CONTROL_SOCKET).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_pair_by_root_with_the_service_stopped_leaves_no_root_owned_state(
    broker: BrokerLike, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `sudo touchlamp pair status` with the service stopped opens the lamp's own link, which
    # creates its outbox and seen-touches databases in the service's state directory: owned by
    # root (0600), the service's dynamic user could not open them when it starts again.
    world = World(broker, tmp_path)
    try:
        with world.relay():
            settings = world.lamp("lamp-a", color="#ff8c1a")
            env_file = world.env_file(settings)
            settings.state_dir.mkdir(parents=True, exist_ok=True)
            os.chown(settings.state_dir, 61234, 61234)

            assert main(["pair", "status", "--env-file", str(env_file)]) == 0
            assert "Not paired" in capsys.readouterr().out

        files = sorted(settings.state_dir.rglob("*"))
        assert files, "the link wrote nothing: the test would prove nothing"
        owners = {path.name: (path.stat().st_uid, path.stat().st_gid) for path in files}
        assert owners == dict.fromkeys(owners, (61234, 61234))
    finally:
        world.close()
