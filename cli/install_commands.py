"""The ``install`` and ``uninstall`` subcommands of ``touchlamp device|relay``: their arguments.

Kept apart from ``touchlamp.install`` (the installer: venvs, pip, systemd, settings templates),
which is imported only when one of these commands runs: every ``touchlamp device …`` command
builds its parser, and a running lamp is measured by its memory (BENCHMARKS.md, 1.3 MB).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from touchlamp.errors import EXIT_FAILURE

__all__ = ["Role", "register_install", "unit_name"]

# The two things a host can run (and install, and check with ``touchlamp doctor``).
Role = Literal["device", "relay"]


def unit_name(role: Role) -> str:
    """The systemd unit of a component, e.g. ``touchlamp-device.service``."""
    return f"touchlamp-{role}.service"


def register_install(subparsers: argparse._SubParsersAction[Any], *, role: Role) -> None:
    """Add ``install`` and ``uninstall`` to a component's subcommands (``touchlamp ROLE …``)."""
    unit = unit_name(role)
    parser = subparsers.add_parser(
        "install",
        help=f"install {unit}: a venv under /opt, settings under /etc/touchlamp, enabled",
        description=(
            f"Install {unit} (idempotent: a second run changes nothing). "
            "Run as root; --dry-run prints the steps without changing anything."
        ),
    )
    _add_common(parser)
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="a touchlamp wheel or source folder (default: where this touchlamp came from)",
    )
    parser.add_argument(
        "--no-venv",
        dest="venv",
        action="store_false",
        help="no virtual environment: the unit runs this environment's touchlamp command",
    )
    parser.add_argument(
        "--system-site-packages",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the venv see the system's Python packages (default: yes for a lamp, so "
        "Raspberry Pi OS's python3-lgpio can stand in for lgpio's wheel; no for a relay)",
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=Path(sys.executable),
        help="the Python to create the venv with",
    )
    parser.add_argument(
        "--pip-option",
        dest="pip_options",
        action="append",
        default=[],
        metavar="OPTION",
        help="pass OPTION to pip install (repeatable), e.g. --pip-option=--no-index",
    )
    parser.add_argument(
        "--reinstall", action="store_true", help="pip-install touchlamp even if the version matches"
    )
    if role == "relay":
        parser.add_argument(
            "--with-broker",
            action="store_true",
            help="Mosquitto runs here too: add touchlamp's drop-in to mosquitto.service",
        )
    if role == "device":
        parser.add_argument(
            "--wifi-setup",
            action="store_true",
            help="install Debian's comitup: with no known Wi-Fi the lamp opens a hotspot "
            "(touchlamp-NNNN) whose page chooses one (for a lamp given as a gift)",
        )
    parser.set_defaults(func=_install_command, role=role, with_broker=False, wifi_setup=False)

    remove = subparsers.add_parser(
        "uninstall",
        help=f"remove {unit} (keeps the settings unless --purge)",
        description=f"Stop, disable and remove {unit}; the venv goes with the last touchlamp unit.",
    )
    _add_common(remove)
    remove.add_argument(
        "--purge", action="store_true", help="also remove the settings and the service's state"
    )
    remove.set_defaults(func=_uninstall_command, role=role)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=Path, default=Path("/"), help="install under this folder (default: /)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done, change nothing"
    )


def _install_command(args: argparse.Namespace) -> int:
    from touchlamp.install import InstallOptions, install  # noqa: PLC0415  only when it runs

    options = InstallOptions(
        role=args.role,
        root=args.root,
        source=args.source,
        venv=args.venv,
        system_site_packages=args.system_site_packages,
        python=args.python,
        pip_options=tuple(args.pip_options),
        reinstall=args.reinstall,
        with_broker=args.with_broker,
        wifi_setup=args.wifi_setup,
    )
    return _guarded(lambda: install(options, dry_run=args.dry_run, out=sys.stdout))


def _uninstall_command(args: argparse.Namespace) -> int:
    from touchlamp.install import (  # noqa: PLC0415  only when it runs
        COMPONENTS,
        UninstallOptions,
        on,
        uninstall,
    )

    options = UninstallOptions(role=args.role, root=args.root, purge=args.purge)
    remove_from_home_assistant = None
    if args.role == "device":
        # Read before the uninstall removes the settings (and the venv this runs from).
        from touchlamp.device.homeassistant_removal import prepare_uninstall  # noqa: PLC0415

        settings = on(args.root, COMPONENTS["device"].settings_path)
        remove_from_home_assistant = prepare_uninstall(settings, out=sys.stdout)
    result = _guarded(lambda: uninstall(options, dry_run=args.dry_run, out=sys.stdout))
    if remove_from_home_assistant is not None and result == 0:
        # After the service stopped: a running lamp would publish its entities again.
        remove_from_home_assistant(args.dry_run)
    return result


def _guarded(action: Callable[[], int]) -> int:
    """An install's own errors end it in ``main``; a refused write is named here, with the fix."""
    try:
        result = action()
    except PermissionError as error:
        print(
            f"touchlamp: {error.filename}: permission denied; run it as root (sudo)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return result
