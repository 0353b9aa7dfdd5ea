"""Where an install puts a lamp or a relay: the paths, their modes, and what differs between
the two components."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from touchlamp.errors import TouchlampError
from touchlamp.install_commands import Role, unit_name

__all__ = [
    "BROKER_DROP_IN",
    "BROKER_DROP_IN_DIR",
    "COMITUP_CONF",
    "COMITUP_CONF_MODE",
    "COMITUP_PROGRAM",
    "COMMAND_LINK",
    "COMPONENTS",
    "ETC_DIR",
    "ETC_DIR_MODE",
    "OPT_DIR",
    "SETTINGS_MODE",
    "STATE_ROOT",
    "UNIT_COMMAND",
    "UNIT_DIR",
    "UNIT_MODE",
    "VENV_DIR",
    "WANTS_DIR",
    "Component",
    "InstallError",
    "on",
]

OPT_DIR = "/opt/touchlamp"
VENV_DIR = "/opt/touchlamp/venv"
ETC_DIR = "/etc/touchlamp"
UNIT_DIR = "/etc/systemd/system"
WANTS_DIR = "/etc/systemd/system/multi-user.target.wants"
COMMAND_LINK = "/usr/local/bin/touchlamp"
BROKER_DROP_IN_DIR = "/etc/systemd/system/mosquitto.service.d"
BROKER_DROP_IN = f"{BROKER_DROP_IN_DIR}/touchlamp.conf"
STATE_ROOT = "/var/lib"
ETC_DIR_MODE = 0o711
SETTINGS_MODE = 0o600
UNIT_MODE = 0o644
COMITUP_CONF = "/etc/comitup.conf"
COMITUP_PROGRAM = "/usr/sbin/comitup"
COMITUP_CONF_MODE = 0o644
# The command line the shipped units start; ``--no-venv`` points it elsewhere.
UNIT_COMMAND = f"{VENV_DIR}/bin/touchlamp"


class InstallError(TouchlampError, RuntimeError):
    """An install or uninstall cannot go on; the message says what to change."""


@dataclass(frozen=True, kw_only=True)
class Component:
    """What the installer needs to know about a lamp or a relay."""

    role: Role
    unit: str
    settings_file: str
    state_directory: str
    # A lamp's venv also sees Raspberry Pi OS's python3-lgpio (gpiozero's pin driver): the
    # alternative to lgpio's wheel, which exists only for 64-bit Raspberry Pi OS bookworm or
    # later with Python 3.11 (DEPLOY.md); a relay needs nothing from the system.
    system_site_packages: bool
    # The groups the unit's SupplementaryGroups= names: systemd does not start it without them.
    groups: tuple[str, ...] = ()
    first_steps: tuple[str, ...]

    @property
    def settings_path(self) -> str:
        return f"{ETC_DIR}/{self.settings_file}"

    @property
    def unit_path(self) -> str:
        return f"{UNIT_DIR}/{self.unit}"


COMPONENTS: dict[Role, Component] = {
    "device": Component(
        role="device",
        unit=unit_name("device"),
        settings_file="device.env",
        state_directory="touchlamp",
        system_site_packages=True,
        groups=("gpio", "i2c", "spi"),
        first_steps=(
            "enroll the lamp with the token the relay's operator gave you:",
            "    sudo touchlamp device enroll TOKEN --env-file /etc/touchlamp/device.env",
            "then start it and check it:",
            "    sudo systemctl restart touchlamp-device",
            "    sudo touchlamp doctor --role device",
        ),
    ),
    "relay": Component(
        role="relay",
        unit=unit_name("relay"),
        settings_file="relay.env",
        state_directory="touchlamp-relay",
        system_site_packages=False,
        first_steps=(
            "put the broker's relay and admin passwords into /etc/touchlamp/relay.env",
            "(TOUCHLAMP_RELAY_MQTT__PASSWORD, TOUCHLAMP_RELAY_ADMIN__PASSWORD), then:",
            "    sudo systemctl restart touchlamp-relay",
            "    sudo touchlamp doctor --role relay",
        ),
    ),
}


def on(root: Path, absolute: str) -> Path:
    """``absolute`` (a path on the target system) inside ``root``."""
    return root / absolute.lstrip("/")
