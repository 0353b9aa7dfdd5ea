"""The checks of a lamp: settings, clock, GPIO and the buses its hardware uses, its service,
the broker, its login, the relay's answer and its pairing."""

from __future__ import annotations

import ssl
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import ValidationError

from touchlamp.config.device import DeviceSettings
from touchlamp.device.control import ControlError, NoLampRunningError, ask_running_lamp
from touchlamp.device.gpio import uses_gpio
from touchlamp.device.simulated import is_simulated
from touchlamp.doctor.findings import Finding, fail, ok, skip
from touchlamp.doctor.network import check_broker
from touchlamp.doctor.probes import Probes, check_clock, check_service
from touchlamp.doctor.session import NoAnswerError, Session, open_session
from touchlamp.doctor.settings_file import read_settings
from touchlamp.install_commands import unit_name
from touchlamp.protocol import (
    PairAction,
    PairRequest,
    PairResponse,
    ProtocolError,
    Topics,
    decode_pair_response,
    encode,
)

__all__ = ["check_device"]


def check_device(
    env_file: Path, *, probes: Probes, simulated: bool | None = None
) -> Iterator[Finding]:
    """Every check of a lamp, in order; stops early where the rest could not mean anything.

    A simulated lamp (``simulated``, or ``None``: as its state directory says) has no GPIO and
    no service to check, and runs on a machine whose clock is not the lamp's business."""
    settings_finding, settings = read_settings(DeviceSettings, env_file)
    yield from settings_finding
    if settings is None:
        return
    mqtt_settings = settings.mqtt
    host, port = mqtt_settings.host, mqtt_settings.effective_port
    if simulated is None:
        simulated = is_simulated(settings.state_dir)
    yield ok(
        f"settings {env_file}: {'simulated ' if simulated else ''}lamp {settings.lamp_id}, "
        f"broker {host}:{port}" + (" (TLS)" if mqtt_settings.tls else "")
    )
    if simulated:
        yield check_clock(probes, simulated=True)
        yield skip("GPIO, pin driver and service: a simulated lamp has none")
    else:
        yield check_clock(probes)
        yield from _check_hardware(settings, probes)
        yield check_service("device", probes)
    password = mqtt_settings.password
    if password is None:
        yield fail(
            f"lamp {settings.lamp_id} has no MQTT password",
            f"enroll it: sudo touchlamp device enroll TOKEN --env-file {env_file}",
        )
        return
    reached = yield from check_broker(
        mqtt_settings, probes, prefix="TOUCHLAMP_DEVICE_MQTT", then="credentials, pairing and relay"
    )
    if reached is None:
        return
    yield from _check_lamp_session(
        settings, env_file, reached.context, probes, password=password.get_secret_value()
    )


def _check_lamp_session(
    settings: DeviceSettings,
    env_file: Path,
    context: ssl.SSLContext | None,
    probes: Probes,
    *,
    password: str,
) -> Iterator[Finding]:
    """Credentials, relay and pairing: asked through the running lamp when there is one (a
    second connection under the lamp's client id would take over its session), else directly."""
    username = settings.mqtt_username
    unit = unit_name("device")
    try:
        response = ask_running_lamp(
            settings.state_dir, PairRequest(action=PairAction.STATUS), timeout=probes.timeout * 3
        )
    except NoLampRunningError:
        pass
    except ControlError as error:
        yield fail(
            f"the running lamp cannot ask the relay: {error}",
            f"journalctl -u {unit} -n 50 shows what its connection does",
        )
        return
    else:
        yield ok(f"the running lamp is connected: the broker accepted user {username}")
        yield ok("the relay answered the running lamp's pairing request")
        yield _paired(response, settings.lamp_id)
        return
    mqtt_settings = settings.mqtt
    with open_session(
        host=mqtt_settings.host,
        port=mqtt_settings.effective_port,
        username=username,
        password=password,
        context=context,
        timeout=probes.timeout,
        client_id=settings.lamp_id,
        session_expiry=mqtt_settings.session_expiry_seconds,
    ) as session:
        if session.refused is not None:
            yield fail(
                f"the broker {mqtt_settings.host}:{mqtt_settings.effective_port} refused user "
                f"{username} ({session.refused})",
                "re-enroll the lamp with a new token from the relay's operator: "
                f"sudo touchlamp device enroll TOKEN --env-file {env_file}",
            )
            yield skip("paired and relay: need accepted credentials")
            return
        yield ok(f"the broker accepted user {username}")
        yield from _check_pairing(session, settings)


def _check_hardware(settings: DeviceSettings, probes: Probes) -> Iterator[Finding]:
    hardware = settings.hardware
    if uses_gpio(hardware):
        chips = sorted(probes.dev_dir.glob("gpiochip*"))
        if not chips:
            yield fail(
                f"no GPIO chip ({probes.dev_dir}/gpiochip*): this is not a Raspberry Pi, or its "
                "GPIO driver is missing",
                "run the lamp on a Raspberry Pi with Raspberry Pi OS (or `touchlamp sim` "
                "elsewhere)",
            )
        else:
            yield _group_access(chips, "gpio", "GPIO", probes)
        yield _check_lgpio(probes)
    else:
        yield skip("GPIO: no touch sensor or LED on GPIO pins in the settings")
    if hardware.touch_kind == "mpr121":
        buses = sorted(probes.dev_dir.glob("i2c-*"))
        if not buses:
            yield fail(
                "no I2C bus for the MPR121 touch board",
                "enable I2C: sudo raspi-config nonint do_i2c 0, then reboot",
            )
        else:
            yield _group_access(buses, "i2c", "I2C", probes)
    if hardware.led_kind == "neopixel":
        spi = sorted(probes.dev_dir.glob("spidev0.*"))
        if not spi:
            yield fail(
                "no SPI bus for the NeoPixel strip (it is driven over SPI, data on GPIO10)",
                "enable SPI: sudo raspi-config nonint do_spi 0, then reboot",
            )
        else:
            yield _group_access(spi, "spi", "SPI", probes)


def _check_lgpio(probes: Probes) -> Finding:
    state, detail = probes.lgpio()
    pip = f"sudo {sys.prefix}/bin/pip install 'lgpio>=0.2.2'"
    match state:
        case "installed":
            return ok("gpiozero's pin driver lgpio is importable")
        case "missing":
            return fail(
                "gpiozero's pin driver lgpio is not importable",
                f"{pip} (64-bit Raspberry Pi OS), or sudo apt install python3-lgpio (the "
                "lamp's venv sees the system's packages)",
            )
        case "empty":
            return fail(
                "the installed lgpio is an empty placeholder (lgpio 0.0.0.2: pip found no lgpio "
                "wheel for this system)",
                f"sudo {sys.prefix}/bin/pip uninstall -y lgpio && sudo apt install python3-lgpio",
            )
        case "broken":
            return fail(
                f"gpiozero's pin driver lgpio does not load ({detail})",
                f"{pip} --force-reinstall, or sudo apt install --reinstall python3-lgpio",
            )


def _group_access(devices: Sequence[Path], group: str, what: str, probes: Probes) -> Finding:
    """The service reaches the devices through ``SupplementaryGroups=gpio i2c``."""
    gid = probes.group_id(group)
    if gid is None:
        return fail(
            f"no group {group}: the lamp's service gets {what} access through it",
            f"sudo groupadd --system {group}, and a udev rule giving {devices[0]} to it "
            "(Raspberry Pi OS has both)",
        )
    for device in devices:
        info = device.stat()
        mode = info.st_mode
        group_rw = info.st_gid == gid and mode & stat.S_IRGRP and mode & stat.S_IWGRP
        others_rw = mode & stat.S_IROTH and mode & stat.S_IWOTH
        if not (group_rw or others_rw):
            return fail(
                f"{device} is not read/write for group {group} "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                f"sudo chgrp {group} {device} && sudo chmod g+rw {device}, and make it last with "
                "a udev rule (Raspberry Pi OS ships one)",
            )
    names = ", ".join(device.name for device in devices)
    return ok(f"{what} {names} accessible to group {group}")


def _check_pairing(session: Session, settings: DeviceSettings) -> Iterator[Finding]:
    topics = Topics(root=settings.mqtt.topic_root)
    lamp_id = settings.lamp_id
    started = time.monotonic()
    try:
        payload = session.request(
            topics.pair(lamp_id),
            topics.pair_response(lamp_id),
            encode(PairRequest(action=PairAction.STATUS)),
            what="a pairing request",
        )
    except NoAnswerError as error:
        yield fail(
            f"relay responding: {error}",
            "on the relay's host: sudo systemctl status touchlamp-relay, and "
            "sudo touchlamp doctor --role relay",
        )
        yield skip("paired: needs an answer from the relay")
        return
    elapsed = time.monotonic() - started
    try:
        response = decode_pair_response(topics.pair_response(lamp_id), payload)
    except (ProtocolError, ValidationError) as error:
        yield fail(f"relay responding: its answer does not decode ({error})", "update the relay")
        return
    yield ok(f"the relay answered a pairing request in {elapsed * 1000:.0f} ms")
    yield _paired(response, lamp_id)


def _paired(response: PairResponse, lamp_id: str) -> Finding:
    partners = [member for member in response.members if member != lamp_id]
    if response.ok and partners:
        return ok(f"paired: group {response.group} with {', '.join(partners)}")
    return fail(
        f"lamp {lamp_id} is not paired with any other lamp",
        "sudo touchlamp pair new on this lamp, then sudo touchlamp pair join CODE on the other",
    )
