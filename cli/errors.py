"""``TouchlampError``: the one base of touchlamp's errors, and the exit codes it carries.

Every exception class of the project derives from ``TouchlampError`` (keeping a builtin base
where callers rely on one, e.g. ``SettingsError`` is also a ``ValueError``), as gpiozero's
errors derive from ``GPIOZeroError``. A class says which exit code a command ends with when it
escapes: ``run_handler`` behind ``touchlamp``'s ``main`` (cli/cli.py) catches ``TouchlampError``
once, prints its message and exits with ``exit_code``, so a command lists no errors of its own
unless it adds something to the message (ARCHITECTURE.md, "One error base, one way to write a
file, …").

The exit codes below are the same for every command, and live here rather than in cli/cli.py so
that a component's commands need not import the command line's module for them. systemd's units
rely on the 2: restarting will not help, so they do not restart on it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigurationError",
    "RefusedError",
    "TouchlampError",
]

EXIT_OK = 0
"""Done."""
EXIT_FAILURE = 1
"""Refused or failed; the message says why and what to do (trying again later may work)."""
EXIT_USAGE = 2
"""Bad usage or settings, or hardware that cannot work as set up: restarting will not help."""


class TouchlampError(Exception):
    """Base of every touchlamp error; the message names the thing at fault and the fix.

    ``exit_code`` is the code a command exits with when this error ends it (``EXIT_FAILURE``
    unless a subclass says otherwise).
    """

    exit_code: ClassVar[int] = EXIT_FAILURE


class ConfigurationError(TouchlampError):
    """A setting, an argument or the hardware cannot work as set up (exit 2): the fix is a
    change to them, not a retry."""

    exit_code: ClassVar[int] = EXIT_USAGE


class RefusedError(TouchlampError):
    """A command cannot do what was asked; the message says why and what to do (exit 1)."""
