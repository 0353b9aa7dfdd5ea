"""``touchlamp doctor``'s arguments, which roles and files it checks, and the report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from touchlamp.doctor.device_checks import check_device
from touchlamp.doctor.findings import print_findings
from touchlamp.doctor.probes import Probes
from touchlamp.doctor.relay_checks import check_relay
from touchlamp.errors import EXIT_FAILURE, EXIT_OK
from touchlamp.install_commands import Role

__all__ = ["register", "roles_and_files", "run_doctor"]

ETC_DIR = Path("/etc/touchlamp")
EXIT_PROBLEMS = EXIT_FAILURE  # the report shows each problem and its fix


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
        problems += print_findings(findings, out)
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
