"""The small system probes the checks look at (clock, systemd, groups, lgpio), replaceable in
tests through ``Probes``, and the checks both roles share that read nothing but them."""

from __future__ import annotations

import ctypes
import grp
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from touchlamp.device.gpio import LgpioState, lgpio_state
from touchlamp.doctor.findings import Finding, fail, ok, skip
from touchlamp.install_commands import Role, unit_name

__all__ = ["Probes", "check_clock", "check_service", "clock_synchronised"]

_TIME_ERROR = 5  # adjtimex's "clock not synchronised" state
_TIMEX_BYTES = 512  # larger than ``struct timex`` on every Linux architecture


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
    result = subprocess.run(  # noqa: S603  a fixed command with a unit name from unit_name
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


def check_clock(probes: Probes, *, simulated: bool = False) -> Finding:
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


def check_service(role: Role, probes: Probes) -> Finding:
    unit = unit_name(role)
    state = probes.service_state(unit)
    if state is None:
        return skip(f"service {unit}: systemd is not running here")
    if state == "active":
        return ok(f"service {unit} is running")
    return fail(
        f"service {unit} is {state}",
        f"sudo systemctl restart {unit}; journalctl -u {unit} -n 50 says why it stopped",
    )
