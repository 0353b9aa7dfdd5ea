"""The ``touchlamp`` command: one parser, with each component's subcommands in its own module.

Each component module exposes ``register(subparsers)``; it adds its parser and sets ``func`` (a
callable taking the parsed namespace and returning an exit code). Keeping the subcommands next to
the code they drive means a newcomer finds ``touchlamp relay …`` in ``server/cli.py``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from touchlamp import __version__, sdnotify
from touchlamp.errors import EXIT_FAILURE, EXIT_OK, TouchlampError

# Which module registers each command, in the order ``--help`` lists them. Only the module of
# the command being run is imported: a lamp's `device run` does not load the relay and broker
# code (measured: 5 MB of a Pi's memory).
_COMMANDS = {
    "demo": "touchlamp.demo_commands",
    "sim": "touchlamp.demo_commands",
    "device": "touchlamp.device.cli",
    "pair": "touchlamp.device.cli",
    "relay": "touchlamp.server.cli",
    "broker": "touchlamp.broker.cli",
    "doctor": "touchlamp.doctor",
}

_log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone when it is known, else for every command (``--help``)."""
    parser = argparse.ArgumentParser(
        prog="touchlamp",
        description=(
            "A long-distance touch lamp: touch yours and the others glow in your colour. "
            "Run `touchlamp demo` to try two simulated lamps in your browser."
        ),
    )
    parser.add_argument("--version", action="version", version=f"touchlamp {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    wanted = [_COMMANDS[command]] if command in _COMMANDS else list(_COMMANDS.values())
    for module_name in dict.fromkeys(wanted):
        importlib.import_module(module_name).register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    # Under systemd the journal stamps each line itself; a second timestamp is noise there.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level, format=stamp + "%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Top-level options take no values, so the first word that is not an option is the command.
    command = next((word for word in arguments if not word.startswith("-")), None)
    args = build_parser(command).parse_args(arguments)
    configure_logging(args.verbose)
    handler: Handler = args.func
    try:
        return run_handler(handler, args)
    except KeyboardInterrupt:
        return EXIT_OK


def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command; a ``TouchlampError`` that ends it becomes its message and exit code.

    The one place that happens (touchlamp.errors): ``main`` and ``python -m touchlamp.install``
    both come through here, so a command lists no errors of its own.
    """
    try:
        return handler(args)
    except TouchlampError as error:
        _log.debug("the command ended on an error", exc_info=True)
        print(f"touchlamp: {error}", file=sys.stderr)
        # Shown by `systemctl status` when a service stops on it (nothing outside systemd).
        sdnotify.status(f"stopped: {error}")
        return error.exit_code


def not_available_yet(what: str, issue: str) -> Handler:
    """A handler for a command that a later piece of work fills in: says so, exits non-zero."""

    def handler(_args: argparse.Namespace) -> int:
        print(f"touchlamp: `{what}` is not available yet ({issue}).", file=sys.stderr)
        return EXIT_FAILURE

    return handler
