"""``touchlamp device install`` and ``touchlamp relay install``: put a lamp or a relay in place.

What an install does, under a root prefix (``/`` on the machine itself, a temporary folder in
tests or when preparing an image)::

    /opt/touchlamp/venv                    a virtual environment with touchlamp pip-installed
    /usr/local/bin/touchlamp               a link to the venv's command (when /usr/local/bin exists)
    /etc/touchlamp/                        0711 root: the service opens its broker CA by name
    /etc/touchlamp/{device,relay}.env      0600 root, written once, never overwritten
    /etc/systemd/system/touchlamp-{device,relay}.service
    /etc/systemd/system/multi-user.target.wants/…   enabled (``systemctl enable`` on ``/``)
    /etc/systemd/system/mosquitto.service.d/touchlamp.conf   relay ``--with-broker`` only

Why /etc/touchlamp is 0711 rather than 0700: the services run as a dynamic, unprivileged user
and receive their env file as a systemd credential (``LoadCredential=``), so they never read it
in place; a broker CA certificate named by the settings (public, 0644) must still be openable by
that user. 0711 lets it open a file it knows the name of, without listing the directory.

A root other than ``/`` is for tests and for inspecting what an install would do: a virtual
environment cannot be moved (its scripts name its Python by absolute path), so on a real machine
install with the default root.

Every step is planned by comparing what is wanted with what is there, so running the install
twice changes nothing the second time, and ``--dry-run`` prints the plan without changing
anything. ``uninstall`` removes what install added: the unit and its enablement, and the
virtual environment once no touchlamp unit is left (a Pi may run both the lamp and the relay);
``--purge`` also removes the settings and the service's state. Settings are kept by default,
because after enrollment they hold the lamp's only copy of its password.
"""

from __future__ import annotations

import argparse
import grp
import json
import platform
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import unquote, urlparse

from touchlamp.cli import run_handler
from touchlamp.errors import EXIT_OK, TouchlampError
from touchlamp.files import write_atomically
from touchlamp.install_commands import Role, register_install, unit_name

__all__ = [
    "COMPONENTS",
    "Component",
    "InstallError",
    "InstallOptions",
    "Step",
    "UninstallOptions",
    "broker_drop_in_text",
    "carry_out",
    "comitup_conf_text",
    "default_source",
    "groups_advice",
    "install",
    "installed_version",
    "main",
    "missing_groups",
    "pip_extras",
    "plan_install",
    "plan_uninstall",
    "plan_wifi_setup",
    "register_install",
    "settings_template",
    "source_version",
    "uninstall",
    "unit_text",
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
# The command line the shipped units start; ``--no-venv`` points it elsewhere.
_UNIT_COMMAND = f"{VENV_DIR}/bin/touchlamp"
_DISTRIBUTION = "touchlamp"


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


@dataclass(frozen=True, kw_only=True)
class InstallOptions:
    """``source``: a wheel or a source folder (``None``: the folder this touchlamp runs from).
    ``venv=False`` installs no virtual environment and points the unit at the ``touchlamp``
    command of the running Python environment (``command``)."""

    role: Role
    root: Path = Path("/")
    source: Path | None = None
    venv: bool = True
    system_site_packages: bool | None = None
    python: Path = field(default_factory=lambda: Path(sys.executable))
    pip_options: tuple[str, ...] = ()
    reinstall: bool = False
    # Also put touchlamp's systemd drop-in for Mosquitto in place (the broker runs here too).
    with_broker: bool = False
    # Debian's comitup: with no known Wi-Fi, a hotspot to choose one (DEPLOY.md "Give a lamp").
    wifi_setup: bool = False
    command: Path = field(default_factory=lambda: Path(sysconfig.get_path("scripts")) / "touchlamp")
    # The machine the venv is for (``platform.machine()``): a lamp on 64-bit Linux gets the
    # ``pi`` extra (lgpio's wheel); elsewhere pip would have to compile lgpio.
    machine: str = field(default_factory=platform.machine)


@dataclass(frozen=True, kw_only=True)
class UninstallOptions:
    role: Role
    root: Path = Path("/")
    purge: bool = False


class Step(Protocol):
    """One change: ``describe()`` says it in one line, ``apply()`` makes it."""

    def describe(self) -> str: ...

    def apply(self) -> None: ...


# ---- the steps ----


@dataclass(frozen=True, kw_only=True)
class MakeDir:
    path: Path
    mode: int

    def describe(self) -> str:
        return f"create directory {self.path} ({self.mode:04o})"

    def apply(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(self.mode)


@dataclass(frozen=True, kw_only=True)
class SetMode:
    path: Path
    mode: int
    was: int

    def describe(self) -> str:
        return f"change mode of {self.path} from {self.was:04o} to {self.mode:04o}"

    def apply(self) -> None:
        self.path.chmod(self.mode)


@dataclass(frozen=True, kw_only=True)
class WriteFile:
    path: Path
    content: str
    mode: int
    replaces: bool

    def describe(self) -> str:
        verb = "update" if self.replaces else "write"
        return f"{verb} {self.path} ({self.mode:04o})"

    def apply(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A power cut leaves the old file or the new one; a secret is never world-readable.
        write_atomically(self.path, self.content, mode=self.mode)


@dataclass(frozen=True, kw_only=True)
class Symlink:
    path: Path
    target: str

    def describe(self) -> str:
        return f"link {self.path} -> {self.target}"

    def apply(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.symlink_to(self.target)


@dataclass(frozen=True, kw_only=True)
class Run:
    argv: tuple[str, ...]

    def describe(self) -> str:
        return "run " + " ".join(self.argv)

    def apply(self) -> None:
        try:
            subprocess.run(self.argv, check=True)  # noqa: S603  fixed argument lists built here
        except FileNotFoundError:
            raise InstallError(f"{self.argv[0]} not found; is it installed?") from None
        except subprocess.CalledProcessError as error:
            raise InstallError(
                f"`{' '.join(self.argv)}` failed with exit code {error.returncode}; "
                "its output above says why"
            ) from None


@dataclass(frozen=True, kw_only=True)
class CreateVenv:
    path: Path
    python: Path
    system_site_packages: bool

    def describe(self) -> str:
        sees = "with" if self.system_site_packages else "without"
        return f"create virtual environment {self.path} ({self.python}, {sees} system packages)"

    def apply(self) -> None:
        argv = [str(self.python), "-m", "venv"]
        if self.system_site_packages:
            argv.append("--system-site-packages")
        Run(argv=(*argv, str(self.path))).apply()


@dataclass(frozen=True, kw_only=True)
class PipInstall:
    venv: Path
    source: Path
    options: tuple[str, ...]
    force: bool
    extras: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        """The source, with its extras as pip reads them (``./touchlamp[pi]``)."""
        return f"{self.source}[{','.join(self.extras)}]" if self.extras else str(self.source)

    def describe(self) -> str:
        return f"pip install {self.requirement} into {self.venv}" + (
            " (reinstall)" if self.force else ""
        )

    def apply(self) -> None:
        argv = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        argv += ["--disable-pip-version-check", *self.options]
        if self.force:
            argv += ["--force-reinstall", "--no-deps"]
        Run(argv=(*argv, self.requirement)).apply()


@dataclass(frozen=True, kw_only=True)
class Remove:
    path: Path

    def describe(self) -> str:
        return f"remove {self.path}"

    def apply(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        else:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True, kw_only=True)
class RemoveDirIfEmpty:
    """Judged when applied: earlier steps of the same plan may have emptied it."""

    path: Path

    def describe(self) -> str:
        return f"remove directory {self.path} if nothing else is in it"

    def apply(self) -> None:
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


# ---- planning ----


def on(root: Path, absolute: str) -> Path:
    """``absolute`` (a path on the target system) inside ``root``."""
    return root / absolute.lstrip("/")


def plan_install(options: InstallOptions) -> list[Step]:
    """The steps that make the component installed and enabled; empty when it already is."""
    component = COMPONENTS[options.role]
    root = options.root
    steps: list[Step] = []
    if options.venv:
        steps += _plan_venv(options, component)
        command = _UNIT_COMMAND
    else:
        if not options.command.is_file():
            raise InstallError(
                f"no touchlamp command at {options.command}: install touchlamp into this "
                "Python environment first, or leave out --no-venv"
            )
        command = str(options.command)
    steps += _plan_dir(on(root, ETC_DIR), ETC_DIR_MODE)
    settings = on(root, component.settings_path)
    if settings.exists():
        steps += _plan_mode(settings, SETTINGS_MODE)
    else:
        steps.append(
            WriteFile(
                path=settings,
                content=settings_template(component),
                mode=SETTINGS_MODE,
                replaces=False,
            )
        )
    steps += _plan_file(on(root, component.unit_path), unit_text(component, command), UNIT_MODE)
    if options.with_broker:
        if component.role != "relay":
            raise InstallError("--with-broker goes with the relay: touchlamp relay install")
        steps += _plan_file(on(root, BROKER_DROP_IN), broker_drop_in_text(), UNIT_MODE)
    if options.wifi_setup:
        if component.role != "device":
            raise InstallError(
                "--wifi-setup goes with a lamp: touchlamp device install --wifi-setup"
            )
        steps += plan_wifi_setup(root)
    steps += _plan_enable(root, component.unit, installing=True)
    if _is_live_root(root) and _systemd_running() and steps:
        steps.append(Run(argv=("systemctl", "daemon-reload")))
    return steps


def plan_uninstall(options: UninstallOptions) -> list[Step]:
    """The steps that remove what ``plan_install`` added (settings and state only with purge)."""
    component = COMPONENTS[options.role]
    root = options.root
    steps: list[Step] = []
    unit = on(root, component.unit_path)
    steps += _plan_enable(root, component.unit, installing=False)
    removed_units = False
    if unit.exists():
        steps.append(Remove(path=unit))
        removed_units = True
    drop_in = on(root, BROKER_DROP_IN)
    if component.role == "relay" and drop_in.exists():
        steps += [Remove(path=drop_in), RemoveDirIfEmpty(path=on(root, BROKER_DROP_IN_DIR))]
        removed_units = True
    if removed_units and _is_live_root(root) and _systemd_running():
        steps.append(Run(argv=("systemctl", "daemon-reload")))
    others = [
        path
        for path in sorted(on(root, UNIT_DIR).glob("touchlamp-*.service"))
        if path.name != component.unit
    ]
    if not others:
        link = on(root, COMMAND_LINK)
        if link.is_symlink() and str(link.readlink()) == f"{VENV_DIR}/bin/touchlamp":
            steps.append(Remove(path=link))
        venv = on(root, VENV_DIR)
        if venv.exists():
            steps.append(Remove(path=venv))
        if on(root, OPT_DIR).is_dir():
            steps.append(RemoveDirIfEmpty(path=on(root, OPT_DIR)))
    if options.purge:
        settings = on(root, component.settings_path)
        if settings.exists():
            steps.append(Remove(path=settings))
        if on(root, ETC_DIR).is_dir():
            steps.append(RemoveDirIfEmpty(path=on(root, ETC_DIR)))
        # DynamicUser= keeps the state in /var/lib/private/NAME behind a /var/lib/NAME link.
        for state in (
            on(root, f"{STATE_ROOT}/{component.state_directory}"),
            on(root, f"{STATE_ROOT}/private/{component.state_directory}"),
        ):
            if state.exists() or state.is_symlink():
                steps.append(Remove(path=state))
    return steps


def _plan_venv(options: InstallOptions, component: Component) -> list[Step]:
    root = options.root
    source = options.source if options.source is not None else default_source()
    wanted = source_version(source)
    venv = on(root, VENV_DIR)
    steps: list[Step] = [*_plan_dir(on(root, OPT_DIR), 0o755)]
    if not (venv / "bin" / "python").exists():
        site = options.system_site_packages
        steps.append(
            CreateVenv(
                path=venv,
                python=options.python,
                system_site_packages=component.system_site_packages if site is None else site,
            )
        )
    installed = installed_version(venv)
    if installed != wanted or options.reinstall:
        steps.append(
            PipInstall(
                venv=venv,
                source=source,
                options=options.pip_options,
                force=options.reinstall and installed == wanted,
                extras=pip_extras(component.role, options.machine),
            )
        )
    link = on(root, COMMAND_LINK)
    if link.parent.is_dir() and not link.exists() and not link.is_symlink():
        steps.append(Symlink(path=link, target=f"{VENV_DIR}/bin/touchlamp"))
    return steps


def pip_extras(role: Role, machine: str) -> tuple[str, ...]:
    """A lamp on 64-bit ARM Linux (a Pi 4 or 5 on 64-bit Raspberry Pi OS) gets the ``pi`` extra,
    lgpio from its wheel; elsewhere there is no wheel to take, and the lamp relies on the
    system's python3-lgpio (the venv sees system packages)."""
    return ("pi",) if role == "device" and machine in ("aarch64", "arm64") else ()


def missing_groups(root: Path, names: Sequence[str]) -> list[str]:
    """Which of the groups ``names`` the target system lacks (its /etc/group; on the machine
    itself also any the name service knows)."""
    try:
        lines = on(root, "/etc/group").read_text("utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    present = {line.split(":", 1)[0] for line in lines if line and not line.startswith("#")}
    return [name for name in names if name not in present and not _known_group(root, name)]


def _known_group(root: Path, name: str) -> bool:
    if not _is_live_root(root):
        return False
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def groups_advice(component: Component, missing: Sequence[str]) -> list[str]:
    """What to do about groups the unit needs and the system lacks (Raspberry Pi OS has them)."""
    if not missing:
        return []
    names = ", ".join(missing)
    create = " && ".join(f"sudo groupadd --system {name}" for name in missing)
    groups = " ".join(component.groups)
    return [
        f"warning: this system has no group {names}: systemd will not start {component.unit},",
        f"  which runs in groups {groups} (the owners of the GPIO, I2C and SPI devices).",
        "  On a Raspberry Pi, install Raspberry Pi OS (it has them). Elsewhere create them:",
        f"    {create}",
        "  and give each its devices with a udev rule (DEPLOY.md, 'Not on Raspberry Pi OS').",
    ]


def _plan_dir(path: Path, mode: int) -> list[Step]:
    if not path.is_dir():
        return [MakeDir(path=path, mode=mode)]
    return _plan_mode(path, mode)


def _plan_mode(path: Path, mode: int) -> list[Step]:
    current = path.stat().st_mode & 0o7777
    return [] if current == mode else [SetMode(path=path, mode=mode, was=current)]


COMITUP_CONF = "/etc/comitup.conf"
COMITUP_PROGRAM = "/usr/sbin/comitup"
COMITUP_CONF_MODE = 0o644


def comitup_conf_text() -> str:
    """``/etc/comitup.conf`` for a lamp: its hotspot is ``touchlamp-NNNN`` (comitup puts a
    number of four digits, persistent per machine, in place of ``<nnnn>``)."""
    return (
        '# Written by `touchlamp device install --wifi-setup` (DEPLOY.md, "Give a lamp").\n'
        "# With no Wi-Fi it knows, the lamp opens the hotspot touchlamp-NNNN: join it from a\n"
        "# phone, choose your Wi-Fi on the page that opens (or http://10.41.0.1/). comitup(8).\n"
        "ap_name: touchlamp-<nnnn>\n"
    )


@dataclass(frozen=True, kw_only=True)
class Note:
    """A step that cannot be taken here, said so in the plan (applying it does nothing)."""

    text: str

    def describe(self) -> str:
        return self.text

    def apply(self) -> None:
        return None


def plan_wifi_setup(root: Path) -> list[Step]:
    """Debian's comitup package (on the machine itself), then its configuration file."""
    steps: list[Step] = []
    if not on(root, COMITUP_PROGRAM).exists():
        if _is_live_root(root):
            # confold: comitup's own /etc/comitup.conf is replaced below, and a later upgrade
            # of the package must keep ours without asking.
            steps.append(
                Run(
                    argv=(
                        "apt-get",
                        "install",
                        "--yes",
                        "--option=Dpkg::Options::=--force-confold",
                        "comitup",
                    )
                )
            )
        else:
            steps.append(
                Note(
                    text=f"not installing Debian's comitup package under {root}: "
                    "apt-get install comitup in that system (it is not the running one)"
                )
            )
    steps += _plan_file(on(root, COMITUP_CONF), comitup_conf_text(), COMITUP_CONF_MODE)
    return steps


def _plan_file(path: Path, content: str, mode: int) -> list[Step]:
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return _plan_mode(path, mode)
    return [WriteFile(path=path, content=content, mode=mode, replaces=path.exists())]


def _plan_enable(root: Path, unit: str, *, installing: bool) -> list[Step]:
    """Enablement is the ``multi-user.target.wants`` link, made by ``systemctl`` on a running
    system (it also knows about aliases and presets) and by hand in a prefix."""
    link = on(root, f"{WANTS_DIR}/{unit}")
    if _is_live_root(root):
        if installing and not link.is_symlink():
            return [Run(argv=("systemctl", "enable", unit))]
        if not installing and on(root, f"{UNIT_DIR}/{unit}").exists():
            # Stopped even when not enabled: a unit started by hand must not outlive its file.
            now = ("--now",) if _systemd_running() else ()
            return [Run(argv=("systemctl", "disable", *now, unit))]
        return []
    if installing and not link.is_symlink():
        return [Symlink(path=link, target=f"{UNIT_DIR}/{unit}")]
    if not installing and link.is_symlink():
        return [Remove(path=link)]
    return []


def _is_live_root(root: Path) -> bool:
    return root.resolve() == Path("/")


def _systemd_running() -> bool:
    """Whether systemd manages this machine now (not in a container, a chroot or an image
    being prepared, where ``systemctl enable`` still works but reloading and stopping do not)."""
    return Path("/run/systemd/system").is_dir()


# ---- what gets installed ----


def unit_text(component: Component, command: str) -> str:
    """The shipped unit, with its ``ExecStart=`` pointed at ``command``."""
    text = resources.files("touchlamp.systemd").joinpath(component.unit).read_text("utf-8")
    if command == _UNIT_COMMAND:
        return text
    marker = f"ExecStart={_UNIT_COMMAND} "
    if marker not in text:
        raise InstallError(f"the shipped {component.unit} has no `{marker}` line")
    return text.replace(marker, f"ExecStart={command} ")


def broker_drop_in_text() -> str:
    """touchlamp's systemd drop-in for Debian's mosquitto.service."""
    drop_ins = resources.files("touchlamp.systemd").joinpath("mosquitto.service.d")
    return drop_ins.joinpath("touchlamp.conf").read_text("utf-8")


def settings_template(component: Component) -> str:
    """The first content of the settings file: the component's example, which describes every
    setting (``config/<role>.env.example``)."""
    example = resources.files("touchlamp.config").joinpath(f"{component.role}.env.example")
    try:
        text = example.read_text("utf-8")
    except FileNotFoundError:
        raise InstallError(
            f"the package has no config/{component.role}.env.example; reinstall touchlamp"
        ) from None
    variable = f"TOUCHLAMP_{component.role.upper()}_STATE_DIR"
    state = f"{STATE_ROOT}/{component.state_directory}"
    return (
        f"{text.rstrip()}\n\n"
        f"# ---- written by `touchlamp {component.role} install` "
        + "-"
        * (60 - len(component.role))
        + f"\n# The service keeps its state in {state} (systemd's StateDirectory=). Naming it\n"
        "# here makes the commands you run by hand with sudo use the same state as the service.\n"
        f"{variable}={state}\n"
    )


def default_source() -> Path:
    """The folder (or wheel) the running touchlamp was installed from, as pip recorded it."""
    # Several may be found (a source folder's touchlamp.egg-info when run from it); only an
    # installed one records where it came from.
    for distribution in metadata.distributions(name=_DISTRIBUTION):
        recorded = distribution.read_text("direct_url.json")
        if not recorded:
            continue
        url = urlparse(json.loads(recorded).get("url", ""))
        if url.scheme == "file" and Path(unquote(url.path)).exists():
            return Path(unquote(url.path))
    raise InstallError(
        "cannot tell where this touchlamp was installed from: pass --from with a wheel "
        "(touchlamp-*.whl) or a clone of the touchlamp repository"
    )


def source_version(source: Path) -> str:
    """The version a wheel's file name or a source folder's pyproject.toml declares."""
    if source.is_file() and source.suffix == ".whl":
        name, version, *_ = source.name.split("-")
        if name != _DISTRIBUTION:
            raise InstallError(f"{source} is a wheel of {name!r}, not of touchlamp")
        return version
    pyproject = source / "pyproject.toml"
    if source.is_dir() and pyproject.is_file():
        project: dict[str, Any] = tomllib.loads(pyproject.read_text("utf-8")).get("project", {})
        if project.get("name") != _DISTRIBUTION:
            raise InstallError(
                f"{source} is not a touchlamp source folder (see its pyproject.toml)"
            )
        return str(project["version"])
    raise InstallError(
        f"--from {source}: expected a touchlamp wheel (touchlamp-*.whl) or a folder with the "
        "project's pyproject.toml"
    )


def installed_version(venv: Path) -> str | None:
    """The touchlamp version installed in ``venv``, read from its metadata (not by running it)."""
    for info in sorted(venv.glob(f"lib/python3*/site-packages/{_DISTRIBUTION}-*.dist-info")):
        for line in (info / "METADATA").read_text("utf-8").splitlines():
            if line.startswith("Version:"):
                return line.partition(":")[2].strip()
    return None


# ---- running a plan ----


def carry_out(steps: Sequence[Step], *, dry_run: bool, out: TextIO) -> None:
    """Print each step, and apply it unless ``dry_run``."""
    for step in steps:
        print(("would " if dry_run else "") + step.describe(), file=out)
        if not dry_run:
            step.apply()


def install(options: InstallOptions, *, dry_run: bool, out: TextIO) -> int:
    component = COMPONENTS[options.role]
    steps = plan_install(options)
    advice = groups_advice(component, missing_groups(options.root, component.groups))
    if not steps:
        print(f"{component.unit} is installed and up to date; nothing to do", file=out)
    else:
        carry_out(steps, dry_run=dry_run, out=out)
    if steps and not dry_run:
        print(f"\n{component.unit} is installed and enabled. Next:", file=out)
        for line in component.first_steps:
            print("  " + line, file=out)
    if advice:
        print("", *advice, sep="\n", file=out)
    return EXIT_OK


def uninstall(options: UninstallOptions, *, dry_run: bool, out: TextIO) -> int:
    component = COMPONENTS[options.role]
    steps = plan_uninstall(options)
    if not steps:
        print(f"{component.unit} is not installed; nothing to do", file=out)
        return EXIT_OK
    carry_out(steps, dry_run=dry_run, out=out)
    settings = on(options.root, component.settings_path)
    if not options.purge and settings.exists():
        kept = "would keep" if dry_run else "kept"
        print(f"{kept} {settings} (it holds the password); --purge removes it", file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m touchlamp.install device|relay install|uninstall …`` (the same as
    ``touchlamp device install …``), for a machine where only the package is at hand."""
    parser = argparse.ArgumentParser(prog="python -m touchlamp.install")
    roles = parser.add_subparsers(title="component", metavar="ROLE", required=True)
    for role in COMPONENTS:
        commands = roles.add_parser(role, help=f"install or remove the {role}")
        register_install(
            commands.add_subparsers(title="commands", metavar="COMMAND", required=True), role=role
        )
    args = parser.parse_args(argv)
    return run_handler(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
