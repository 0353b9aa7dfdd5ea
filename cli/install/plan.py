"""What an install or uninstall has to do: the steps, decided from the options and from what
is already on the target system, so a second run plans nothing."""

from __future__ import annotations

import grp
import platform
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from touchlamp.install.layout import (
    BROKER_DROP_IN,
    BROKER_DROP_IN_DIR,
    COMITUP_CONF,
    COMITUP_CONF_MODE,
    COMITUP_PROGRAM,
    COMMAND_LINK,
    COMPONENTS,
    ETC_DIR,
    ETC_DIR_MODE,
    OPT_DIR,
    SETTINGS_MODE,
    STATE_ROOT,
    UNIT_COMMAND,
    UNIT_DIR,
    UNIT_MODE,
    VENV_DIR,
    WANTS_DIR,
    Component,
    InstallError,
    on,
)
from touchlamp.install.sources import default_source, installed_version, source_version
from touchlamp.install.steps import (
    CreateVenv,
    MakeDir,
    Note,
    PipInstall,
    Remove,
    RemoveDirIfEmpty,
    Run,
    SetMode,
    Step,
    Symlink,
    WriteFile,
)
from touchlamp.install.templates import (
    broker_drop_in_text,
    comitup_conf_text,
    settings_template,
    unit_text,
)
from touchlamp.install_commands import Role

__all__ = [
    "InstallOptions",
    "UninstallOptions",
    "groups_advice",
    "missing_groups",
    "pip_extras",
    "plan_install",
    "plan_uninstall",
    "plan_wifi_setup",
]


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


def plan_install(options: InstallOptions) -> list[Step]:
    """The steps that make the component installed and enabled; empty when it already is."""
    component = COMPONENTS[options.role]
    root = options.root
    steps: list[Step] = []
    if options.venv:
        steps += _plan_venv(options, component)
        command = UNIT_COMMAND
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
