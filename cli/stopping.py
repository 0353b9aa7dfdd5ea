"""``StopSignals``: SIGTERM, SIGINT and SIGHUP turned into one request to stop, safely.

Every long-running command (``device run``, ``relay run``, ``broker run``, ``demo``, ``sim``)
stops the same way whether systemd stops it (SIGTERM), someone presses Ctrl-C (SIGINT) or its
terminal is closed (SIGHUP): what it started is stopped in order and it exits 0. RELIABILITY.md
("No broker left behind") has the scenarios and their tests.

Why not a ``threading.Event`` set from the handler: Python runs a signal handler in the main
thread between two bytecodes, possibly while that same thread holds the Event's lock inside
``Event.wait``; ``set`` would then wait for that lock for ever. The handler here only flips a
flag and writes a byte to a non-blocking socket (no lock, no buffered I/O), and ``wait`` reads
that socket. Messages are written with ``os.write`` for the same reason: ``print`` takes the
stream's lock, which the interrupted code may hold ("reentrant call").

Use it from the main thread (only there may signal handlers be set)::

    with StopSignals() as stop:
        start_everything()
        while not stop.wait(timeout=1.0):
            keep_an_eye_on_things()
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any, Self

__all__ = ["STOP_SIGNALS", "StopSignals", "uninterrupted"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Each one asks a touchlamp command to stop cleanly; SIGHUP is a closed terminal."""

# Depth of ``uninterrupted`` blocks, and whether an interrupt came while one ran (main thread).
_held = 0
_interrupt_held = False


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold back ``StopSignals``' start-up interrupt until the block has ended.

    For the few steps that must not be cut in two: starting a child process and recording its
    pid. A ``KeyboardInterrupt`` raised inside ``subprocess.Popen`` after the fork loses the
    child's pid, so nothing would stop that child (seen: a demo given SIGTERM during start-up
    left its Mosquitto running). A signal that arrives inside the block is taken at once (the
    stop is requested); only the interrupt waits, and is raised when the block ends.
    """
    global _held, _interrupt_held  # noqa: PLW0603  per process, as signal handlers are
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if _held == 0 and _interrupt_held:
        _interrupt_held = False
        raise KeyboardInterrupt


# What signal.signal returns and takes: a function, SIG_DFL/SIG_IGN, or None (set outside Python).
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopSignals:
    """A stop request made by SIGTERM, SIGINT or SIGHUP while the ``with`` block runs.

    ``interrupt_until_ready``: until ``ready()`` is called, a signal raises
    ``KeyboardInterrupt`` in the main thread instead, so a start-up that blocks (connecting,
    pairing) unwinds through its ``finally`` blocks at once. Once the first signal has been
    taken, later ones are only reported: clean-up is never cut short. The previous handlers
    are back after the block. Each signal is reported on stderr as ``PROGRAM: SIGHUP, stopping``
    unless ``quiet`` (helpers that a parent process stops as a matter of course).
    """

    def __init__(
        self,
        *,
        interrupt_until_ready: bool = False,
        program: str = "touchlamp",
        quiet: bool = False,
    ) -> None:
        self._interrupting = interrupt_until_ready
        self._program = program
        self._quiet = quiet
        self._received: signal.Signals | None = None
        self._previous: dict[signal.Signals, _Handler] = {}
        self._alarm, self._ring = socket.socketpair()
        self._ring.settimeout(0.0)  # non-blocking: the handler must never wait

    @property
    def received(self) -> signal.Signals | None:
        """The signal that asked to stop, if one has."""
        return self._received

    def is_set(self) -> bool:
        """Whether a stop was requested (``threading.Event``'s name, for drop-in use)."""
        return self._received is not None

    def ready(self) -> None:
        """From now on a signal only requests a stop (``wait`` returns) instead of interrupting."""
        self._interrupting = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (``True``) or ``timeout`` passes (``False``).

        Main thread only: the handler runs there, so this returns as soon as it has.
        """
        if self._received is not None:
            return True
        self._alarm.settimeout(timeout)
        with contextlib.suppress(TimeoutError, BlockingIOError):  # BlockingIOError: timeout 0
            self._alarm.recv(16)
        return self._received is not None

    def __enter__(self) -> Self:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            # None: set outside Python, which cannot be put back; the default is the closest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
        self._alarm.close()
        self._ring.close()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._received is not None:
            self._say(f"{name}: already stopping…")
            return
        self._received = signal.Signals(signum)
        self._say(f"{name}, stopping")
        with contextlib.suppress(OSError):  # full (a stop is already pending) or closed
            self._ring.send(b"!")
        if self._interrupting:
            if _held:
                global _interrupt_held  # noqa: PLW0603  see uninterrupted()
                _interrupt_held = True
                return
            raise KeyboardInterrupt

    def _say(self, message: str) -> None:
        if self._quiet:
            return
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no stderr: say nothing
            os.write(sys.stderr.fileno(), f"{self._program}: {message}\n".encode())
