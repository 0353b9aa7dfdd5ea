"""Stop Mosquitto when the process that started it ends without stopping it (SIGKILL, OOM).

``ManagedBroker(stop_with_parent=True)`` (launcher.py) runs this file as a small process of its
own: ``python -I -S parent_watch.py PIDFD LAUNCHER_PID``, with its stdin the read end of a pipe
whose only write end the launcher holds, and PIDFD a pidfd of Mosquitto. However the launcher
ends, the kernel closes that write end: ``read`` returns end-of-file, and Mosquitto gets SIGTERM
(it saves its database), then SIGKILL if it is still there after ``GRACE_SECONDS``.

Why a process rather than the kernel's parent-death signal (``PR_SET_PDEATHSIG``): Linux clears
that signal when a process changes its user (prctl(2)), and Mosquitto started as root switches to
``mosquitto``, so a demo killed with SIGKILL left its broker running (issue 18). A closed pipe
does not care who runs what, and it follows the whole launcher process, not the thread that
started Mosquitto. The pidfd names Mosquitto itself: a pid reused after Mosquitto ended is never
signalled. RELIABILITY.md ("No broker left behind") has the scenario and its test.

This file imports nothing from touchlamp (``-S`` skips site-packages): it starts in milliseconds
and holds no more memory than a bare interpreter.
"""

from __future__ import annotations

import os
import select
import signal
import sys

__all__ = ["GRACE_SECONDS", "main"]

GRACE_SECONDS = 3.0
"""How long Mosquitto may take to save and exit after SIGTERM before it gets SIGKILL."""


def main(argv: list[str]) -> int:
    pidfd, launcher = int(argv[1]), int(argv[2])
    # Blocks until the launcher writes (it never does) or ends, closing the pipe's write end.
    while os.read(sys.stdin.fileno(), 1):
        pass
    if not _send(pidfd, signal.SIGTERM):
        return 0  # Mosquitto had already stopped: the launcher stopped it, or it crashed
    _say(f"the process that started mosquitto (pid {launcher}) ended: stopping mosquitto")
    if not _ended_within(pidfd, GRACE_SECONDS):
        _say(f"mosquitto ignored SIGTERM for {GRACE_SECONDS:g} s: killing it")
        _send(pidfd, signal.SIGKILL)
    return 0


def _send(pidfd: int, signum: signal.Signals) -> bool:
    """Signal the process behind ``pidfd``; ``False`` if it has already been reaped."""
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    return True


def _ended_within(pidfd: int, seconds: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)  # a pidfd turns readable when its process ends
    return bool(poller.poll(int(seconds * 1000)))


def _say(message: str) -> None:
    # stdout is Mosquitto's own log: the line explains the stop to whoever reads it later.
    print(f"touchlamp parent watch: {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
