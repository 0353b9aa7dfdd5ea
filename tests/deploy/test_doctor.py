"""``touchlamp doctor`` against a real Mosquitto and a real relay: the lines a user reads, and the
exit code."""

from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.doctor_support import env_file, report
from tests.device.link_support import EventLog
from tests.relay.lamps import TestLamp
from tests.relay.live import Site, running_relay
from tests.support.waiting import wait_until
from touchlamp.cli import main as touchlamp_main
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.relay import AdminSettings, MqttSettings
from touchlamp.device.control import ControlServer
from touchlamp.device.events import Connected
from touchlamp.device.link import LampLink
from touchlamp.device.simulated import mark_simulated, unmark_simulated
from touchlamp.doctor import (
    Outcome,
    Probes,
    check_device,
    check_relay,
    clock_synchronised,
    roles_and_files,
    run_doctor,
)
from touchlamp.install import COMPONENTS, settings_template
from touchlamp.server.metrics import MetricsServer, RelayMetrics


def lamp_settings(site: Site, tmp_path: Path, lamp_id: str, password: str, **extra: object) -> Path:
    return env_file(
        tmp_path / f"{lamp_id}.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": lamp_id,
            "TOUCHLAMP_DEVICE_MQTT__HOST": site.broker.host,
            "TOUCHLAMP_DEVICE_MQTT__PORT": site.broker.port,
            "TOUCHLAMP_DEVICE_MQTT__PASSWORD": password,
            "TOUCHLAMP_DEVICE_MQTT__TOPIC_ROOT": site.root,
            **extra,
        },
    )


def register(site: Site, lamp_id: str) -> str:
    """A lamp with a broker login and a place in the relay's store; returns its password."""
    password = site.broker.add_lamp(lamp_id)
    site.store.add_lamp(lamp_id, name=lamp_id, color="#336699", now_ms=0)
    return password


def pair(site: Site, *lamp_ids: str) -> None:
    site.store.create_group(list(lamp_ids), name="home", group_id="g-home")


def outcomes(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines if not line.startswith(" ")]


# ---- a lamp ----


def test_a_paired_lamp_with_a_running_relay_is_all_ok(
    site: Site, tmp_path: Path, pi: Probes
) -> None:
    password = register(site, "lamp-kitchen")
    register(site, "lamp-studio")
    pair(site, "lamp-kitchen", "lamp-studio")
    settings = lamp_settings(site, tmp_path, "lamp-kitchen", password)
    out = io.StringIO()
    with running_relay(site):
        code = run_doctor(roles=["device"], env_files={"device": settings}, probes=pi, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "FAIL" not in text
    assert f"OK   settings {settings}: lamp lamp-kitchen, broker 127.0.0.1:" in text
    assert "OK   the broker accepted user lamp-kitchen" in text
    assert "OK   the relay answered a pairing request in" in text
    assert "OK   paired: group home with lamp-studio" in text
    assert text.endswith("no problems found\n")


def test_an_unpaired_lamp_is_told_how_to_pair(site: Site, tmp_path: Path, pi: Probes) -> None:
    settings = lamp_settings(site, tmp_path, "lamp-alone", register(site, "lamp-alone"))
    with running_relay(site):
        lines = report(check_device(settings, probes=pi))
    (not_paired,) = [line for line in lines if "not paired" in line]
    assert not_paired.startswith("FAIL lamp lamp-alone is not paired with any other lamp")
    assert "sudo touchlamp pair new on this lamp" in not_paired


def test_a_running_lamp_is_asked_through_its_control_socket(
    site: Site, tmp_path: Path, pi: Probes
) -> None:
    """With the lamp's service running, doctor asks it instead of connecting as the lamp (that
    would take over its session): the lamp stays connected throughout."""
    password = register(site, "lamp-kitchen")
    register(site, "lamp-studio")
    pair(site, "lamp-kitchen", "lamp-studio")
    settings_file = lamp_settings(
        site, tmp_path, "lamp-kitchen", password, TOUCHLAMP_DEVICE_STATE_DIR=tmp_path / "state"
    )
    settings = load_settings(DeviceSettings, env_file=settings_file)
    events = EventLog()
    link = LampLink.from_settings(settings, sink=events)
    control = ControlServer(state_dir=settings.state_dir, link=link)
    with running_relay(site):
        link.start()
        control.start()
        try:
            events.wait_for(Connected)
            lines = report(check_device(settings_file, probes=pi))
            assert link.connected
        finally:
            control.stop()
            link.stop()
    assert "OK   the running lamp is connected: the broker accepted user lamp-kitchen" in lines
    assert "OK   the relay answered the running lamp's pairing request" in lines
    assert "OK   paired: group home with lamp-studio" in lines
    assert len(events.of(Connected)) == 1  # never kicked off and reconnected


def test_a_stopped_lamp_keeps_the_glows_queued_for_it(
    site: Site, tmp_path: Path, pi: Probes
) -> None:
    """Without a running lamp doctor connects as the lamp, resuming its session without taking
    anything from it: a glow queued while the lamp was off still reaches the lamp."""
    sender = site.lamp("lamp-a")
    password = register(site, "lamp-b")
    lamp = TestLamp(site.endpoint, "lamp-b", password)
    site.lamps.append(lamp)
    lamp.connect()
    pair(site, "lamp-a", "lamp-b")
    lamp.disconnect()  # its persistent session keeps collecting glows
    settings = lamp_settings(site, tmp_path, "lamp-b", password)
    with running_relay(site):
        sender.touch(1)
        wait_until(
            lambda: site.store.get_lamp("lamp-a").last_touch_ms,  # type: ignore[union-attr]
            "the relay to forward touch 1",
        )
        lines = report(check_device(settings, probes=pi))
    assert "OK   the broker accepted user lamp-b" in lines
    assert any(line.startswith("OK   paired: group") for line in lines)
    lamp.connect()
    assert [glow.touch for glow in lamp.wait_glows(1)] == [f"lamp-a:{sender.stream}:1"]


def test_a_wrong_password_means_enrolling_again(site: Site, tmp_path: Path, pi: Probes) -> None:
    register(site, "lamp-kitchen")
    settings = lamp_settings(site, tmp_path, "lamp-kitchen", "not-the-password")
    lines = report(check_device(settings, probes=pi))
    refused = next(i for i, line in enumerate(lines) if "refused user lamp-kitchen" in line)
    assert lines[refused].startswith("FAIL")
    assert "touchlamp device enroll TOKEN" in lines[refused]
    assert outcomes(lines)[-1] == "SKIP"


def test_no_relay_answering_is_a_failure_with_where_to_look(
    site: Site, tmp_path: Path, pi: Probes
) -> None:
    settings = lamp_settings(site, tmp_path, "lamp-kitchen", register(site, "lamp-kitchen"))
    lines = report(check_device(settings, probes=pi))
    relay_line = next(line for line in lines if line.startswith("FAIL relay responding"))
    assert "did not answer a pairing request within 3 s" in relay_line
    assert "systemctl status touchlamp-relay" in relay_line


def test_an_unreachable_broker_stops_the_network_checks(tmp_path: Path, pi: Probes) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    settings = env_file(
        tmp_path / "device.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": "lamp-kitchen",
            "TOUCHLAMP_DEVICE_MQTT__HOST": "127.0.0.1",
            "TOUCHLAMP_DEVICE_MQTT__PORT": closed_port,
            "TOUCHLAMP_DEVICE_MQTT__PASSWORD": "secret-password-1",
        },
    )
    lines = report(check_device(settings, probes=pi))
    assert lines[-2].startswith(f"FAIL the broker 127.0.0.1:{closed_port} is not reachable")
    assert "systemctl status mosquitto" in lines[-2]
    assert lines[-1] == "SKIP TLS, credentials, pairing and relay: need a reachable broker"


# ---- settings ----


def test_missing_settings_say_to_install(tmp_path: Path, pi: Probes) -> None:
    lines = report(check_device(tmp_path / "device.env", probes=pi))
    assert lines == [
        (
            f"FAIL no settings file {tmp_path / 'device.env'}\n"
            "     → fix: install the device: sudo touchlamp device install (or pass --env-file)"
        )
    ]


def test_a_freshly_installed_lamp_is_sent_to_enroll(tmp_path: Path, pi: Probes) -> None:
    settings = tmp_path / "device.env"
    settings.write_text(settings_template(COMPONENTS["device"]))
    settings.chmod(0o600)
    (line,) = report(check_device(settings, probes=pi))
    assert line.startswith(f"FAIL the lamp is not enrolled yet ({settings} has no ")
    assert f"sudo touchlamp device enroll TOKEN --env-file {settings}" in line


def test_a_bad_setting_is_named(tmp_path: Path, pi: Probes) -> None:
    settings = env_file(tmp_path / "device.env", {"TOUCHLAMP_DEVICE_LAMP_ID": "Not A Lamp"})
    (line,) = report(check_device(settings, probes=pi))
    assert line.startswith(f"FAIL settings {settings}: invalid settings: DeviceSettings.lamp_id")
    assert f"edit the TOUCHLAMP_DEVICE_… line it names in {settings}" in line


def test_settings_readable_by_others_are_a_failure(tmp_path: Path, pi: Probes) -> None:
    settings = env_file(
        tmp_path / "device.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": "lamp-kitchen",
            "TOUCHLAMP_DEVICE_MQTT__PORT": 1,
            "TOUCHLAMP_DEVICE_MQTT__PASSWORD": "secret",
        },
        mode=0o644,
    )
    lines = report(check_device(settings, probes=pi))
    assert lines[0] == (
        f"FAIL {settings} is readable by others (0644); it holds a password "
        "(TOUCHLAMP_DEVICE_MQTT__PASSWORD)\n"
        f"     → fix: sudo chmod 600 {settings}"
    )


def test_a_relay_file_naming_password_files_does_not_hold_a_password(
    tmp_path: Path, pi: Probes
) -> None:
    """``…_PASSWORD_FILE`` names a file (root's, 0600): the settings file holds no secret then."""
    password = tmp_path / "relay-mqtt.password"
    password.write_text("secret\n")
    password.chmod(0o600)
    settings = env_file(
        tmp_path / "relay.env",
        {
            "TOUCHLAMP_RELAY_MQTT__PORT": 1,
            "TOUCHLAMP_RELAY_MQTT__PASSWORD_FILE": password,
            "TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE": password,
        },
        mode=0o644,
    )
    lines = report(check_relay(settings, probes=pi))
    assert lines[0].startswith(f"OK   settings {settings}: broker localhost:1")
    assert not [line for line in lines if "password" in line and "readable" in line]
    # The same file with the password itself in it is a failure naming it.
    with settings.open("a") as file:
        file.write("TOUCHLAMP_RELAY_STORE_URL=postgresql://relay:secret@db/touchlamp\n")
    assert report(check_relay(settings, probes=pi))[0] == (
        f"FAIL {settings} is readable by others (0644); it holds a password "
        "(TOUCHLAMP_RELAY_STORE_URL)\n"
        f"     → fix: sudo chmod 600 {settings}"
    )


def test_a_lamp_without_password_is_sent_to_enroll(tmp_path: Path, pi: Probes) -> None:
    settings = env_file(
        tmp_path / "device.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": "lamp-kitchen",
        },
    )
    lines = report(check_device(settings, probes=pi))
    assert lines[-1].startswith("FAIL lamp lamp-kitchen has no MQTT password")
    assert f"sudo touchlamp device enroll TOKEN --env-file {settings}" in lines[-1]


# ---- the Pi itself ----


def hardware_lines(tmp_path: Path, probes: Probes, **hardware: str) -> list[str]:
    values = {f"TOUCHLAMP_DEVICE_HARDWARE__{key.upper()}": value for key, value in hardware.items()}
    settings = env_file(
        tmp_path / "device.env",
        {"TOUCHLAMP_DEVICE_LAMP_ID": "lamp-kitchen", "TOUCHLAMP_DEVICE_MQTT__PORT": 1, **values},
    )
    return [
        line
        for line in report(check_device(settings, probes=probes))
        # What is not about settings, clock, service or password is about the hardware.
        if not any(
            word in line for word in ("settings", "clock", "service touchlamp", "MQTT password")
        )
    ]


def test_gpio_chips_accessible_to_group_gpio_are_ok(tmp_path: Path, pi: Probes) -> None:
    assert hardware_lines(tmp_path, pi) == [
        "OK   GPIO gpiochip0 accessible to group gpio",
        "OK   gpiozero's pin driver lgpio is importable",
    ]


def test_no_gpio_chip_no_group_and_no_lgpio_each_have_a_fix(tmp_path: Path, pi: Probes) -> None:
    no_group = Probes(**{**pi.__dict__, "group_id": lambda _name: None})
    assert hardware_lines(tmp_path, no_group)[0].startswith(
        "FAIL no group gpio: the lamp's service gets GPIO access through it"
    )
    (pi.dev_dir / "gpiochip0").chmod(0o600)
    assert hardware_lines(tmp_path, pi)[0].startswith(
        f"FAIL {pi.dev_dir / 'gpiochip0'} is not read/write for group gpio (mode 0600)"
    )
    (pi.dev_dir / "gpiochip0").unlink()
    bare = Probes(**{**pi.__dict__, "lgpio": lambda: ("missing", "")})
    lines = hardware_lines(tmp_path, bare)
    assert lines[0].startswith("FAIL no GPIO chip")
    assert lines[1] == (
        "FAIL gpiozero's pin driver lgpio is not importable\n"
        f"     → fix: sudo {sys.prefix}/bin/pip install 'lgpio>=0.2.2' (64-bit Raspberry Pi OS), "
        "or sudo apt install python3-lgpio (the lamp's venv sees the system's packages)"
    )
    placeholder = Probes(**{**pi.__dict__, "lgpio": lambda: ("empty", "")})
    assert hardware_lines(tmp_path, placeholder)[1] == (
        "FAIL the installed lgpio is an empty placeholder (lgpio 0.0.0.2: pip found no lgpio "
        "wheel for this system)\n"
        f"     → fix: sudo {sys.prefix}/bin/pip uninstall -y lgpio && sudo apt install "
        "python3-lgpio"
    )


def test_a_simulated_lamp_is_checked_as_one(tmp_path: Path, pi: Probes) -> None:
    """`touchlamp sim` marks the lamp's state directory: no GPIO, pin driver or service to
    expect, and this machine's clock is not the lamp's (here: none of those exist)."""
    machine = Probes(
        **{
            **pi.__dict__,
            "dev_dir": tmp_path / "no-dev",
            "lgpio": lambda: ("missing", ""),
            "clock_check": lambda: False,
            "service_state": lambda _unit: "inactive",
        }
    )
    state = tmp_path / "state"
    settings = env_file(
        tmp_path / "device.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": "lamp-a",
            "TOUCHLAMP_DEVICE_MQTT__PORT": 1,
            "TOUCHLAMP_DEVICE_STATE_DIR": state,
        },
    )
    as_a_pi = report(check_device(settings, probes=machine))
    assert [line.split("\n")[0] for line in as_a_pi if line.startswith("FAIL")][:4] == [
        "FAIL clock not synchronised (TLS certificates, quiet hours and glow ages depend on it)",
        (
            f"FAIL no GPIO chip ({machine.dev_dir}/gpiochip*): this is not a Raspberry Pi, or "
            "its GPIO driver is missing"
        ),
        "FAIL gpiozero's pin driver lgpio is not importable",
        "FAIL service touchlamp-device.service is inactive",
    ]
    mark_simulated(state)
    lines = report(check_device(settings, probes=machine))
    assert lines[:3] == [
        f"OK   settings {settings}: simulated lamp lamp-a, broker localhost:1",
        "SKIP clock: not synchronised on this machine (a simulated lamp uses its clock)",
        "SKIP GPIO, pin driver and service: a simulated lamp has none",
    ]
    # Only the missing password is left to fail (the lamp is not enrolled with a relay).
    assert [line.split("\n")[0] for line in lines if line.startswith("FAIL")] == [
        "FAIL lamp lamp-a has no MQTT password"
    ]
    # --simulated says so for a lamp that has not run yet; False checks it as a Pi.
    unmark_simulated(state)
    assert report(check_device(settings, probes=machine, simulated=True))[:3] == lines[:3]


def test_an_mpr121_needs_i2c_enabled(tmp_path: Path, pi: Probes) -> None:
    lines = hardware_lines(tmp_path, pi, touch_kind="mpr121")
    assert lines[-1].startswith("FAIL no I2C bus for the MPR121 touch board")
    assert "raspi-config nonint do_i2c 0" in lines[-1]
    (pi.dev_dir / "i2c-1").touch()
    (pi.dev_dir / "i2c-1").chmod(0o660)
    assert hardware_lines(tmp_path, pi, touch_kind="mpr121")[-1] == (
        "OK   I2C i2c-1 accessible to group i2c"
    )


def test_a_neopixel_strip_needs_spi_enabled(tmp_path: Path, pi: Probes) -> None:
    lines = hardware_lines(tmp_path, pi, led_kind="neopixel", touch_kind="none")
    # (The "SKIP GPIO: … in the settings" line before it is filtered out with the settings.)
    assert lines == [
        (
            "FAIL no SPI bus for the NeoPixel strip (it is driven over SPI, data on GPIO10)\n"
            "     → fix: enable SPI: sudo raspi-config nonint do_spi 0, then reboot"
        )
    ]
    (pi.dev_dir / "spidev0.0").touch()
    (pi.dev_dir / "spidev0.0").chmod(0o660)
    assert hardware_lines(tmp_path, pi, led_kind="neopixel", touch_kind="none")[-1] == (
        "OK   SPI spidev0.0 accessible to group spi"
    )


def test_clock_and_service_state_are_reported(tmp_path: Path, pi: Probes) -> None:
    probes = Probes(
        **{**pi.__dict__, "clock_check": lambda: False, "service_state": lambda _unit: "failed"}
    )
    settings = env_file(
        tmp_path / "device.env",
        {"TOUCHLAMP_DEVICE_LAMP_ID": "lamp-kitchen", "TOUCHLAMP_DEVICE_MQTT__PORT": 1},
    )
    lines = report(check_device(settings, probes=probes))
    assert any(line.startswith("FAIL clock not synchronised") for line in lines)
    assert any(
        line.startswith("FAIL service touchlamp-device.service is failed")
        and "journalctl -u touchlamp-device.service" in line
        for line in lines
    )


def test_the_kernel_clock_state_is_read_without_error() -> None:
    assert clock_synchronised() in (True, False, None)


# ---- TLS ----


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener on 127.0.0.1 with a self-signed certificate for "localhost"."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, cert
    stopping.set()
    listener.close()
    thread.join(5)


def tls_lines(tmp_path: Path, pi: Probes, port: int, **mqtt: object) -> list[str]:
    settings = env_file(
        tmp_path / "device.env",
        {
            "TOUCHLAMP_DEVICE_LAMP_ID": "lamp-kitchen",
            "TOUCHLAMP_DEVICE_MQTT__HOST": "localhost",
            "TOUCHLAMP_DEVICE_MQTT__PORT": port,
            "TOUCHLAMP_DEVICE_MQTT__PASSWORD": "secret-password-1",
            "TOUCHLAMP_DEVICE_MQTT__TLS": "true",
            **{f"TOUCHLAMP_DEVICE_MQTT__{key.upper()}": value for key, value in mqtt.items()},
        },
    )
    return [line for line in report(check_device(settings, probes=pi)) if "TLS" in line]


def test_a_certificate_signed_by_the_configured_ca_verifies(
    tls_server: tuple[int, Path], tmp_path: Path, pi: Probes
) -> None:
    port, cert = tls_server
    lines = tls_lines(tmp_path, pi, port, ca_file=cert)
    assert lines[-1].startswith("OK   the broker's TLS certificate verifies for localhost")


def test_an_unknown_ca_is_a_failure_naming_the_setting(
    tls_server: tuple[int, Path], tmp_path: Path, pi: Probes
) -> None:
    port, _cert = tls_server
    lines = tls_lines(tmp_path, pi, port)
    assert lines[-1].startswith("FAIL the broker's TLS certificate does not verify")
    assert "set TOUCHLAMP_DEVICE_MQTT__CA_FILE to the CA that signed it" in lines[-1]


def test_plain_mqtt_is_fine_locally_but_not_across_the_internet() -> None:
    from touchlamp.doctor.network import check_tls  # the decision alone, without a broker

    _, local = check_tls("192.168.1.20", 1883, tls=False, ca_file=None, timeout=1, prefix="P")
    assert local.outcome is Outcome.SKIP
    _, remote = check_tls("mqtt.example.net", 1883, tls=False, ca_file=None, timeout=1, prefix="P")
    assert remote.outcome is Outcome.FAIL
    assert remote.fix == "set P__TLS=true (and P__CA_FILE for a private CA)"


# ---- a relay ----


def relay_settings(site: Site, tmp_path: Path, **extra: object) -> Path:
    return env_file(
        tmp_path / "relay.env",
        {
            "TOUCHLAMP_RELAY_MQTT__HOST": site.broker.host,
            "TOUCHLAMP_RELAY_MQTT__PORT": site.broker.port,
            "TOUCHLAMP_RELAY_MQTT__USERNAME": site.broker.relay_username,
            "TOUCHLAMP_RELAY_MQTT__PASSWORD": site.broker.relay_password,
            "TOUCHLAMP_RELAY_STATE_DIR": tmp_path / "state",
            **extra,
        },
    )


def test_a_healthy_relay(site: Site, tmp_path: Path, pi: Probes) -> None:
    metrics = RelayMetrics()
    server = MetricsServer(
        host="127.0.0.1", port=0, registry=metrics.registry, healthy=lambda: True
    )
    server.start()
    try:
        settings = relay_settings(site, tmp_path, TOUCHLAMP_RELAY_METRICS_PORT=server.port)
        lines = report(check_relay(settings, probes=pi))
    finally:
        server.stop()
    assert "OK   the relay is running and connected to the broker (connected)" in lines
    assert "OK   the broker accepted the relay user relay (the running relay is connected)" in lines
    assert any(
        line.startswith("SKIP admin login: no TOUCHLAMP_RELAY_ADMIN__PASSWORD") for line in lines
    )
    assert "FAIL" not in "\n".join(lines)


def test_a_relay_that_is_not_running_and_a_wrong_admin_password(
    site: Site, tmp_path: Path, pi: Probes
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    settings = relay_settings(
        site,
        tmp_path,
        TOUCHLAMP_RELAY_METRICS_PORT=closed_port,
        TOUCHLAMP_RELAY_ADMIN__PASSWORD="wrong",
    )
    lines = report(check_relay(settings, probes=pi))
    assert any(
        line.startswith(f"FAIL the relay does not answer on http://127.0.0.1:{closed_port}/healthz")
        for line in lines
    )
    assert any(
        line.startswith("FAIL the broker 127.0.0.1:")
        and f"refused the admin user {AdminSettings().username}" in line
        for line in lines
    )


def test_a_stopped_relays_login_is_checked_without_taking_its_touches(
    site: Site, tmp_path: Path, pi: Probes
) -> None:
    a, b = site.lamp("lamp-a"), site.lamp("lamp-b")
    site.pair(a, b)
    with running_relay(site):
        pass  # the relay's persistent session now exists
    a.touch(1)  # queued in the stopped relay's session
    username, password = site.broker.relay_login(site.relay_client_id)
    settings = relay_settings(
        site,
        tmp_path,
        TOUCHLAMP_RELAY_MQTT__USERNAME=username,
        TOUCHLAMP_RELAY_MQTT__PASSWORD=password,
        TOUCHLAMP_RELAY_MQTT__CLIENT_ID=site.relay_client_id,
        TOUCHLAMP_RELAY_MQTT__TOPIC_ROOT=site.root,
    )
    lines = report(check_relay(settings, probes=pi))
    assert f"OK   the broker accepted the relay user {username}" in lines
    with running_relay(site):
        assert [glow.touch for glow in b.wait_glows(1)] == [f"lamp-a:{a.stream}:1"]


# ---- the command ----


def test_without_a_role_doctor_checks_whatever_is_installed(tmp_path: Path) -> None:
    assert roles_and_files(None, None, tmp_path) == (
        ["device"],
        {"device": tmp_path / "device.env"},
    )
    (tmp_path / "device.env").touch()
    (tmp_path / "relay.env").touch()
    roles, files = roles_and_files(None, None, tmp_path)
    assert roles == ["device", "relay"]
    assert files["relay"] == tmp_path / "relay.env"
    relay_file = env_file(tmp_path / "mine.env", {"TOUCHLAMP_RELAY_METRICS_PORT": 9108})
    assert roles_and_files(None, relay_file, tmp_path) == (["relay"], {"relay": relay_file})


def test_the_command_exits_non_zero_and_prints_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = env_file(
        tmp_path / "relay.env",
        {"TOUCHLAMP_RELAY_MQTT__PORT": 1, "TOUCHLAMP_RELAY_STATE_DIR": tmp_path},
    )
    assert touchlamp_main(["doctor", "--env-file", str(settings), "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert f"OK   settings {settings}: broker localhost:1" in out
    assert f"FAIL no password for the relay's broker user {MqttSettings().username}" in out
    assert out.endswith("problems found\n")
