"""``install`` and ``uninstall``: plan, carry out, and tell the user what comes next; and
``python -m touchlamp.install`` for a machine where only the package is at hand."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TextIO

from touchlamp.cli import run_handler
from touchlamp.errors import EXIT_OK
from touchlamp.install.layout import COMPONENTS, on
from touchlamp.install.plan import (
    InstallOptions,
    UninstallOptions,
    groups_advice,
    missing_groups,
    plan_install,
    plan_uninstall,
)
from touchlamp.install.steps import carry_out
from touchlamp.install_commands import register_install

__all__ = ["install", "main", "uninstall"]


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
