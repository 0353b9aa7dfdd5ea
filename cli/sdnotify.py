"""Telling systemd how a service is doing (``sd_notify``), and a no-op everywhere else.

A unit with ``Type=notify`` waits for ``ready()`` before it counts the service as started (so
units ordered after it start when it really works), and one with ``WatchdogSec=`` restarts the
service unless ``watchdog()`` is called at least once per ``watchdog_interval()``. Call it from
the healthy main loop, not from a timer thread: a loop that is stuck must stop the pings.
The recommended pace is half the interval, which ``watchdog_due_every()`` returns::

    from touchlamp import sdnotify

    every = sdnotify.watchdog_due_every()        # seconds, or None: no watchdog
    sdnotify.ready()
    while running:
        ...                                      # wait at most ``every`` seconds for work
        sdnotify.watchdog()
    sdnotify.stopping()

The protocol is one datagram of ``KEY=value`` lines to the Unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace); the standard library does
it in a few lines, so no dependency. Outside systemd (``$NOTIFY_SOCKET`` unset) every call does
nothing and returns ``False``. Called from any thread: each call opens its own socket.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_due_every",
    "watchdog_interval",
]

_log = logging.getLogger(__name__)
# A status line is shown by `systemctl status`; systemd cuts long ones anyway.
_MAX_STATUS_CHARS = 200
_warned = False


def notify(state: str) -> bool:
    """Send ``state`` (``KEY=value`` lines) to systemd; ``False`` when not under systemd or
    the socket refused it (logged once, so a broken socket cannot flood the journal)."""
    global _warned  # noqa: PLW0603  one warning per process, not per watchdog ping
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        # Abstract namespace: the name starts with a NUL byte instead of '@'.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as error:
        if not _warned:
            _warned = True
            _log.warning(
                "cannot notify systemd through NOTIFY_SOCKET=%s (%s); with WatchdogSec= set "
                "the service will be restarted",
                os.environ.get("NOTIFY_SOCKET"),
                error.strerror or error,
            )
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """The service is up: ``Type=notify`` units count as started from now on."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def reloading() -> bool:
    """The service is re-reading its configuration; send ``ready()`` when done."""
    return notify("RELOADING=1")


def stopping(status_text: str | None = None) -> bool:
    """The service is shutting down on purpose (not hanging)."""
    return notify("STOPPING=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def status(text: str) -> bool:
    """A one-line state shown by ``systemctl status`` (e.g. ``connected to broker:8883``)."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """The main loop is healthy: reset the watchdog timer."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """The unit's ``WatchdogSec=`` in seconds, or ``None`` when no watchdog watches this process.

    Like ``sd_watchdog_enabled``: ``$WATCHDOG_USEC`` gives the interval, and when
    ``$WATCHDOG_PID`` is set it must be this process (a child started by the service is not the
    one being watched).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def watchdog_due_every() -> float | None:
    """How often to call ``watchdog()``: half the interval, as systemd recommends."""
    interval = watchdog_interval()
    return None if interval is None else interval / 2


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_STATUS_CHARS else line[: _MAX_STATUS_CHARS - 1] + "…"
