"""``touchlamp doctor``: checks a lamp's or a relay's set-up and says what to fix.

One line per check, in the order a problem would show up — settings, broker reachable, TLS,
credentials, then what depends on a working connection::

    OK   settings /etc/touchlamp/device.env: lamp lamp-kitchen, broker mqtt.example.net:8883 (TLS)
    FAIL the broker mqtt.example.net:8883 refused user lamp-kitchen (Bad user name or password)
         → fix: re-enroll the lamp: sudo touchlamp device enroll TOKEN --env-file …
    SKIP paired: needs a broker that accepts the lamp's credentials

The exit code is 1 when any check fails, 0 otherwise (SKIP is not a failure).

Doctor never disturbs a running lamp or relay, nor takes what is queued for a stopped one. A
lamp's login is bound to its client id, and one client id means one connection: a second
connection as the lamp would take over its session. So:

- a running lamp is asked through its control socket (``touchlamp.device.control``), which
  shows that its own connection works;
- a stopped lamp's (or relay's) login is tried under its own client id, resuming its persistent
  session (``clean_start=False``, its own session expiry) and acknowledging nothing but doctor's
  own answer, so the broker sends the queued glows (or touches) again when the service returns;
- a running relay is asked through its ``/healthz`` endpoint; the admin login, bound to no
  client id, gets a clean session of doctor's own.

Doctor publishes nothing but a pairing ``status`` request, which changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import grp
import http.client
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import ValidationError

from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.mqtt import BrokerConnection
from touchlamp.config.relay import RelaySettings
from touchlamp.device.control import ControlError, NoLampRunningError, ask_running_lamp
from touchlamp.device.gpio import LgpioState, lgpio_state, uses_gpio
from touchlamp.device.simulated import is_simulated
from touchlamp.errors import EXIT_FAILURE, EXIT_OK
from touchlamp.mqtt.client import new_client
from touchlamp.mqtt.session import NoAnswerError, Session
from touchlamp.mqtt.tls import CAFileError, tls_context
from touchlamp.protocol import (
    PairAction,
    PairRequest,
    PairResponse,
    ProtocolError,
    Topics,
    decode_pair_response,
    encode,
)

__all__ = [
    "Finding",
    "Outcome",
    "Probes",
    "check_device",
    "check_relay",
    "clock_synchronised",
    "register",
    "roles_and_files",
    "run_doctor",
]

Role = Literal["device", "relay"]
ETC_DIR = Path("/etc/touchlamp")
UNITS = {"device": "touchlamp-device.service", "relay": "touchlamp-relay.service"}
EXIT_PROBLEMS = EXIT_FAILURE  # the report shows each problem and its fix
_TIME_ERROR = 5  # adjtimex's "clock not synchronised" state
_TIMEX_BYTES = 512  # larger than ``struct timex`` on every Linux architecture


class Outcome(Enum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One check's result; ``fix`` is the thing to try, for a failure."""

    outcome: Outcome
    text: str
    fix: str | None = None

    def line(self) -> str:
        head = f"{self.outcome.value:<4} {self.text}"
        return head if self.fix is None else f"{head}\n     → fix: {self.fix}"


def ok(text: str) -> Finding:
    return Finding(outcome=Outcome.OK, text=text)


def fail(text: str, fix: str) -> Finding:
    return Finding(outcome=Outcome.FAIL, text=text, fix=fix)


def skip(text: str) -> Finding:
    return Finding(outcome=Outcome.SKIP, text=text)


# ---- what the checks look at ----


def clock_synchronised() -> bool | None:
    """Whether the kernel counts the clock as synchronised (what ``timedatectl`` shows as
    ``NTPSynchronized``): ``adjtimex`` with no changes returns ``TIME_ERROR`` when it is not.
    ``None`` where there is no ``adjtimex`` (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    timex = ctypes.create_string_buffer(_TIMEX_BYTES)  # modes = 0: read only
    state = adjtimex(timex)
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


def _service_state(unit: str) -> str | None:
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return None
    result = subprocess.run(  # noqa: S603  a fixed command with a unit name from UNITS
        [systemctl, "is-active", unit], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


@dataclass(frozen=True, kw_only=True)
class Probes:
    """What the checks look at, replaceable so tests can show a Pi's /dev on any machine."""

    dev_dir: Path = Path("/dev")
    # Functions as defaults: the dataclass stores them on the instance, so they are not bound.
    clock_check: Callable[[], bool | None] = clock_synchronised
    service_state: Callable[[str], str | None] = _service_state
    lgpio: Callable[[], tuple[LgpioState, str]] = lgpio_state
    group_id: Callable[[str], int | None] = _group_id
    timeout: float = 5.0


# ---- the checks ----


def check_device(
    env_file: Path, *, probes: Probes, simulated: bool | None = None
) -> Iterator[Finding]:
    """Every check of a lamp, in order; stops early where the rest could not mean anything.

    A simulated lamp (``simulated``, or ``None``: as its state directory says) has no GPIO and
    no service to check, and runs on a machine whose clock is not the lamp's business."""
    settings_finding, settings = _load(DeviceSettings, env_file)
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
        yield _check_clock(probes, simulated=True)
        yield skip("GPIO, pin driver and service: a simulated lamp has none")
    else:
        yield _check_clock(probes)
        yield from _check_hardware(settings, probes)
        yield _check_service("device", probes)
    password = mqtt_settings.password
    if password is None:
        yield fail(
            f"lamp {settings.lamp_id} has no MQTT password",
            f"enroll it: sudo touchlamp device enroll TOKEN --env-file {env_file}",
        )
        return
    reached = yield from _check_broker(
        mqtt_settings, probes, prefix="TOUCHLAMP_DEVICE_MQTT", then="credentials, pairing and relay"
    )
    if reached is None:
        return
    yield from _check_lamp_session(
        settings, env_file, reached.context, probes, password=password.get_secret_value()
    )


def check_relay(env_file: Path, *, probes: Probes) -> Iterator[Finding]:
    settings_finding, settings = _load(RelaySettings, env_file)
    yield from settings_finding
    if settings is None:
        return
    mqtt_settings = settings.mqtt
    host, port = mqtt_settings.host, mqtt_settings.effective_port
    yield ok(
        f"settings {env_file}: broker {host}:{port}"
        + (" (TLS)" if mqtt_settings.tls else "")
        + f", store {_store_kind(settings.store_location)}"
    )
    yield _check_clock(probes)
    yield _check_service("relay", probes)
    health, relay_state = _check_health(settings, probes.timeout)
    yield health
    if mqtt_settings.password is None:
        yield fail(
            f"no password for the relay's broker user {mqtt_settings.username}",
            f"set TOUCHLAMP_RELAY_MQTT__PASSWORD in {env_file} (the broker's set-up printed it)",
        )
        return
    relay_password = mqtt_settings.password.get_secret_value()
    reached = yield from _check_broker(
        mqtt_settings, probes, prefix="TOUCHLAMP_RELAY_MQTT", then="credentials"
    )
    if reached is None:
        return
    yield _check_relay_login(
        settings, env_file, reached.context, relay_state, probes, password=relay_password
    )
    yield _check_admin_login(settings, env_file, reached.context, probes)


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
    unit = UNITS["device"]
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
    with _open_session(
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


def _check_relay_login(
    settings: RelaySettings,
    env_file: Path,
    context: ssl.SSLContext | None,
    relay_state: _RelayState,
    probes: Probes,
    *,
    password: str,
) -> Finding:
    """The relay's own login. Its client id is bound to it (and holds its session), so doctor
    connects with it only when no relay runs; a running, connected relay is the proof."""
    mqtt_settings = settings.mqtt
    username = mqtt_settings.username
    if relay_state is _RelayState.CONNECTED:
        return ok(f"the broker accepted the relay user {username} (the running relay is connected)")
    if relay_state is _RelayState.NOT_CONNECTED:
        return skip("relay login: the relay runs but is not connected (see above)")
    if probes.service_state(UNITS["relay"]) == "active":
        return skip(
            "relay login: not checked while the relay runs (it holds the client id); set "
            "TOUCHLAMP_RELAY_METRICS_PORT so that doctor can ask the relay itself"
        )
    with _open_session(
        host=mqtt_settings.host,
        port=mqtt_settings.effective_port,
        username=username,
        password=password,
        context=context,
        timeout=probes.timeout,
        client_id=mqtt_settings.client_id,
        session_expiry=mqtt_settings.session_expiry_seconds,
    ) as session:
        if session.refused is None:
            return ok(f"the broker accepted the relay user {username}")
        return fail(
            f"the broker {mqtt_settings.host}:{mqtt_settings.effective_port} refused the relay "
            f"user {username} with client id {mqtt_settings.client_id} ({session.refused})",
            f"make TOUCHLAMP_RELAY_MQTT__USERNAME/PASSWORD in {env_file} match the broker's "
            "(its set-up printed them); the client id must be the one the broker expects",
        )


def _check_admin_login(
    settings: RelaySettings, env_file: Path, context: ssl.SSLContext | None, probes: Probes
) -> Finding:
    admin = settings.admin
    if admin.password is None:
        return skip(
            "admin login: no TOUCHLAMP_RELAY_ADMIN__PASSWORD "
            "(only `touchlamp relay lamp add/remove` need it)"
        )
    mqtt_settings = settings.mqtt
    with _open_session(
        host=mqtt_settings.host,
        port=mqtt_settings.effective_port,
        username=admin.username,
        password=admin.password.get_secret_value(),
        context=context,
        timeout=probes.timeout,
    ) as session:
        if session.refused is None:
            return ok(f"the broker accepted the admin user {admin.username}")
        return fail(
            f"the broker {mqtt_settings.host}:{mqtt_settings.effective_port} refused the admin "
            f"user {admin.username} ({session.refused})",
            f"make TOUCHLAMP_RELAY_ADMIN__USERNAME/PASSWORD in {env_file} match the broker's "
            "(its set-up printed them)",
        )


def _check_clock(probes: Probes, *, simulated: bool = False) -> Finding:
    synchronised = probes.clock_check()
    if synchronised is None:
        return skip("clock: cannot tell whether it is synchronised on this system")
    if synchronised:
        return ok("clock synchronised")
    if simulated:
        return skip("clock: not synchronised on this machine (a simulated lamp uses its clock)")
    return fail(
        "clock not synchronised (TLS certificates, quiet hours and glow ages depend on it)",
        "sudo timedatectl set-ntp true, and check that the network reaches an NTP server "
        "(timedatectl timesync-status)",
    )


def _load(
    cls: type[DeviceSettings] | type[RelaySettings], env_file: Path
) -> tuple[list[Finding], Any]:
    variable = "TOUCHLAMP_DEVICE_" if cls is DeviceSettings else "TOUCHLAMP_RELAY_"
    if not env_file.exists():
        role = "device" if cls is DeviceSettings else "relay"
        return [
            fail(
                f"no settings file {env_file}",
                f"install the {role}: sudo touchlamp {role} install (or pass --env-file)",
            )
        ], None
    findings: list[Finding] = []
    mode = env_file.stat().st_mode
    secrets_in_file = _secrets(env_file)
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and secrets_in_file:
        findings.append(
            fail(
                f"{env_file} is readable by others ({stat.S_IMODE(mode):04o}); it holds a "
                f"password ({', '.join(secrets_in_file)})",
                f"sudo chmod 600 {env_file}",
            )
        )
    if cls is DeviceSettings and not _names_lamp(env_file):
        findings.append(
            fail(
                f"the lamp is not enrolled yet ({env_file} has no TOUCHLAMP_DEVICE_LAMP_ID)",
                f"sudo touchlamp device enroll TOKEN --env-file {env_file} with the token from "
                "the relay's operator (`touchlamp relay lamp add`)",
            )
        )
        return findings, None
    try:
        settings = load_settings(cls, env_file=env_file)
    except PermissionError:
        findings.append(fail(f"cannot read {env_file}: permission denied", "run it with sudo"))
        return findings, None
    except SettingsError as error:
        findings.append(
            fail(
                f"settings {env_file}: {error}",
                f"edit the {variable}… line it names in {env_file}",
            )
        )
        return findings, None
    return findings, settings


def _secrets(env_file: Path) -> list[str]:
    """The variables in ``env_file`` that hold a secret themselves: a ``…PASSWORD`` (not a
    ``…PASSWORD_FILE``, which names a file) or a store URL with a password in it."""
    try:
        lines = env_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ["unreadable, so assumed"]
    found = []
    for line in lines:
        name, equals, value = line.strip().removeprefix("export ").partition("=")
        name, value = name.strip().upper(), value.strip().strip("'\"")
        if not equals or name.startswith("#") or not value:
            continue
        if name.endswith("PASSWORD") or (name.endswith("STORE_URL") and "@" in value):
            found.append(name)
    return found


def _names_lamp(env_file: Path) -> bool:
    """Whether a lamp id is set at all (in the file or the environment), so that a lamp that
    was installed but not enrolled is told so rather than shown a validation error."""
    if os.environ.get("TOUCHLAMP_DEVICE_LAMP_ID"):
        return True
    try:
        lines = env_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return True  # let load_settings report what is wrong with the file
    return any(
        line.strip().upper().removeprefix("EXPORT ").startswith("TOUCHLAMP_DEVICE_LAMP_ID=")
        for line in lines
    )


def _check_reachable(host: str, port: int, timeout: float, prefix: str) -> Finding:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            elapsed = time.monotonic() - started
    except socket.gaierror as error:
        return fail(
            f"the broker's host name {host} does not resolve ({error.strerror})",
            f"check {prefix}__HOST, and the network (ping {host})",
        )
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return fail(
            f"the broker {host}:{port} is not reachable ({reason})",
            f"check {prefix}__HOST/PORT and the network; on the broker's host: "
            "sudo systemctl status mosquitto (and a firewall letting the port through)",
        )
    return ok(f"the broker {host}:{port} is reachable ({elapsed * 1000:.0f} ms)")


@dataclass(frozen=True, slots=True)
class _Reached:
    """The broker answered (and its certificate verified, with TLS on)."""

    context: ssl.SSLContext | None


def _check_broker(
    mqtt_settings: BrokerConnection, probes: Probes, *, prefix: str, then: str
) -> Generator[Finding, None, _Reached | None]:
    """Reachability, then TLS; ``None`` when the checks named by ``then`` cannot run."""
    host, port = mqtt_settings.host, mqtt_settings.effective_port
    reachable = _check_reachable(host, port, probes.timeout, prefix)
    yield reachable
    if reachable.outcome is Outcome.FAIL:
        yield skip(f"TLS, {then}: need a reachable broker")
        return None
    context, tls_finding = _check_tls(
        host,
        port,
        tls=mqtt_settings.tls,
        ca_file=mqtt_settings.ca_file,
        timeout=probes.timeout,
        prefix=prefix,
    )
    yield tls_finding
    if tls_finding.outcome is Outcome.FAIL and mqtt_settings.tls:
        yield skip(f"{then}: need a broker whose certificate verifies")
        return None
    return _Reached(context)


def _check_tls(
    host: str,
    port: int,
    *,
    tls: bool,
    ca_file: Path | None,
    timeout: float,
    prefix: str,
) -> tuple[ssl.SSLContext | None, Finding]:
    if not tls:
        if _is_local(host):
            return None, skip(f"TLS: off (plain MQTT to {host}, on this machine or network)")
        return None, fail(
            f"TLS is off, so the password crosses the internet in clear to {host}",
            f"set {prefix}__TLS=true (and {prefix}__CA_FILE for a private CA)",
        )
    try:
        context = tls_context(ca_file, setting=f"{prefix}__CA_FILE")
    except CAFileError as error:
        return None, fail(
            f"cannot load the CA file {ca_file} ({error.__cause__})",
            f"point {prefix}__CA_FILE at the PEM certificate of the broker's CA",
        )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as wrapped,
        ):
            certificate = wrapped.getpeercert() or {}
    except ssl.SSLCertVerificationError as error:
        return context, fail(
            f"the broker's TLS certificate does not verify ({error.verify_message})",
            f"set {prefix}__CA_FILE to the CA that signed it, and make {prefix}__HOST the name "
            "the certificate was issued for",
        )
    except (OSError, ssl.SSLError) as error:
        return context, fail(
            f"no TLS handshake with {host}:{port} ({error})",
            f"is {port} the broker's TLS port? (8883 by convention; 1883 is plain MQTT)",
        )
    expires = certificate.get("notAfter", "?")
    return context, ok(f"the broker's TLS certificate verifies for {host} (valid until {expires})")


def _is_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        local_names = (".local", ".lan", ".home.arpa")
        return host == "localhost" or "." not in host or host.endswith(local_names)
    return address.is_private or address.is_loopback or address.is_link_local


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


def _check_service(role: Role, probes: Probes) -> Finding:
    unit = UNITS[role]
    state = probes.service_state(unit)
    if state is None:
        return skip(f"service {unit}: systemd is not running here")
    if state == "active":
        return ok(f"service {unit} is running")
    return fail(
        f"service {unit} is {state}",
        f"sudo systemctl restart {unit}; journalctl -u {unit} -n 50 says why it stopped",
    )


class _RelayState(Enum):
    CONNECTED = "connected"
    NOT_CONNECTED = "not connected"
    NOT_ANSWERING = "not answering"
    UNKNOWN = "unknown"  # its /healthz endpoint is off


def _check_health(settings: RelaySettings, timeout: float) -> tuple[Finding, _RelayState]:
    if settings.metrics_port == 0:
        return skip(
            "relay responding: its /healthz endpoint is off "
            "(set TOUCHLAMP_RELAY_METRICS_PORT, e.g. 9108, to let doctor ask it)"
        ), _RelayState.UNKNOWN
    host, port = settings.metrics_host, settings.metrics_port
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = response.read(200).decode("utf-8", "replace").strip()
    except OSError as error:
        return fail(
            f"the relay does not answer on http://{host}:{port}/healthz "
            f"({error.strerror or error})",
            "sudo systemctl status touchlamp-relay; journalctl -u touchlamp-relay -n 50",
        ), _RelayState.NOT_ANSWERING
    finally:
        connection.close()
    if response.status == http.HTTPStatus.OK:
        return ok(
            f"the relay is running and connected to the broker ({body})"
        ), _RelayState.CONNECTED
    return fail(
        f"the relay answers but is not healthy ({response.status}: {body})",
        "journalctl -u touchlamp-relay -n 50 shows why it cannot reach the broker",
    ), _RelayState.NOT_CONNECTED


def _store_kind(location: str) -> str:
    return "PostgreSQL" if location.startswith(("postgresql:", "postgres:")) else location


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


# ---- a short MQTT session of the doctor's own ----


@contextlib.contextmanager
def _open_session(
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    context: ssl.SSLContext | None,
    timeout: float,
    client_id: str | None = None,
    session_expiry: int = 0,
) -> Iterator[Session]:
    """A short MQTT 5 connection of doctor's own (mqtt/session.py).

    Without ``client_id`` it is a clean, non-persistent session under a random client id, so
    nothing of the service's is touched. With ``client_id`` (a service's id, which the broker may
    bind to its user) it resumes that service's persistent session instead of replacing it —
    ``clean_start=False``, the service's own session expiry — and acknowledges nothing but its
    own answer, so the messages queued for the service stay queued for it (the broker sends
    unacknowledged messages again when the service reconnects). Use it only when the service
    is not running: a second connection with its client id would take over its session.
    """
    client = new_client(
        client_id or f"{username}-doctor-{secrets.token_hex(3)}",
        username=username,
        password=password,
        tls=context,
        log_as=f"{__name__}.paho",
        manual_ack=True,
    )
    with Session.open(
        client,
        host=host,
        port=port,
        timeout=timeout,
        session_expiry=session_expiry if client_id is not None else None,
    ) as session:
        yield session


# ---- running it ----


def run_doctor(
    *,
    roles: Sequence[Role],
    env_files: dict[Role, Path],
    probes: Probes,
    out: TextIO,
    simulated: bool | None = None,
) -> int:
    problems = 0
    for role in roles:
        if len(roles) > 1:
            print(f"== {role}", file=out)
        findings = (
            check_device(env_files[role], probes=probes, simulated=simulated)
            if role == "device"
            else check_relay(env_files[role], probes=probes)
        )
        for finding in findings:
            print(finding.line(), file=out, flush=True)
            problems += finding.outcome is Outcome.FAIL
    if problems:
        print(f"{problems} problem{'s' if problems > 1 else ''} found", file=out)
        return EXIT_PROBLEMS
    print("no problems found", file=out)
    return EXIT_OK


def roles_and_files(
    role: Role | None, env_file: Path | None, etc_dir: Path
) -> tuple[list[Role], dict[Role, Path]]:
    """``--role`` and ``--env-file`` as given, else whatever is installed in ``etc_dir``."""
    if role is not None:
        return [role], {role: env_file or etc_dir / f"{role}.env"}
    if env_file is not None:
        guessed: Role = "relay" if "TOUCHLAMP_RELAY_" in _text_or_empty(env_file) else "device"
        return [guessed], {guessed: env_file}
    installed: list[Role] = [r for r in ("device", "relay") if (etc_dir / f"{r}.env").exists()]
    roles = installed or ["device"]
    return roles, {r: etc_dir / f"{r}.env" for r in roles}


def _text_or_empty(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check settings, broker, credentials, TLS, clock, GPIO, pairing and the relay",
        description=(
            "Check a lamp's or a relay's set-up; each line is OK, SKIP, or FAIL with the fix to "
            "try. Exit code 1 when something is wrong. Run it with sudo: the settings are "
            "readable by root only."
        ),
    )
    parser.add_argument(
        "--role",
        choices=("device", "relay"),
        help="what to check (default: whatever is installed in /etc/touchlamp)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        help="the settings file (default: /etc/touchlamp/ROLE.env)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each network answer"
    )
    parser.add_argument(
        "--simulated",
        action="store_true",
        default=None,
        help="check a lamp run by `touchlamp sim` or `device run --simulate` (no GPIO, no "
        "service); the default is what the lamp's state directory says",
    )
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    roles, env_files = roles_and_files(args.role, args.env_file, ETC_DIR)
    return run_doctor(
        roles=roles,
        env_files=env_files,
        probes=Probes(timeout=args.timeout),
        out=sys.stdout,
        simulated=args.simulated,
    )
