"""Stop Mosquitto when the process that started it ends without stopping it (SIGKILL, OOM).

Both sides of it live here: ``ParentWatch``, used by ``ManagedBroker(stop_with_parent=True)``
(launcher.py), and ``main``, the small watcher process it starts by running this very file
(``python -I -S parent_watch.py LAUNCHER_PID``; it imports nothing from touchlamp, so it starts
in milliseconds and holds no more memory than a bare interpreter).

1. ``ParentWatch(log)`` starts the watcher *before* Mosquitto, with its stdin one end of a
   socket pair whose other end only the launcher holds (close-on-exec: no other child keeps it).
2. ``watch(pid)``, right after Mosquitto is started and before anything could reap it, passes
   the watcher a pidfd of Mosquitto over that socket.
3. However the launcher ends, the kernel closes its end: the watcher reads end-of-file and sends
   Mosquitto SIGTERM (it saves its database), then SIGKILL if it is still there after
   ``GRACE_SECONDS``. ``dismiss()`` — after the launcher has stopped and reaped Mosquitto itself
   — ends the watcher the same way: the pidfd then names a process that is gone, so nothing is
   signalled, and a pid reused meanwhile never is.

Why a process rather than the kernel's parent-death signal (``PR_SET_PDEATHSIG``): Linux clears
that signal when a process changes its user (prctl(2)), and Mosquitto started as root switches to
``mosquitto``, so a demo killed with SIGKILL left its broker running (issue 18). A closed socket
does not care who runs what, and it follows the whole launcher process, where the death signal
follows the thread that started the child. RELIABILITY.md ("No broker left behind") has the
scenario and its test.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

__all__ = ["GRACE_SECONDS", "ParentWatch", "main"]

GRACE_SECONDS = 3.0
"""How long Mosquitto may take to save and exit after SIGTERM before it gets SIGKILL."""

_DISMISS_TIMEOUT = 10.0


class ParentWatch:
    """The launcher's side: a running watcher, told which process to stop by ``watch``."""

    def __init__(self, log_file: IO[bytes]) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(  # noqa: S603  our interpreter and this file
                [sys.executable, "-I", "-S", str(Path(__file__)), str(os.getpid())],
                stdin=theirs.fileno(),
                stdout=log_file,  # Mosquitto's log: where its stop is looked for later
                stderr=log_file,
                start_new_session=True,  # a Ctrl-C meant for the launcher must not end it early
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._channel = ours

    @property
    def pid(self) -> int:
        """The watcher's own pid."""
        return self._process.pid

    def watch(self, pid: int) -> None:
        """Have the watcher stop ``pid`` (our unreaped child) once we end."""
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(self._channel, [b"m"], [pidfd])
        finally:
            os.close(pidfd)

    def dismiss(self) -> None:
        """End the watcher (after our child is stopped and reaped: it then signals nothing)."""
        self._channel.close()
        try:
            self._process.wait(_DISMISS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main(argv: list[str]) -> int:
    """The watcher: wait for the launcher to end, then stop the process it named."""
    launcher = int(argv[1])
    channel = socket.socket(fileno=sys.stdin.fileno())
    _, fds, _, _ = socket.recv_fds(channel, 16, 1)
    if not fds:
        return 0  # the launcher ended before it started anything
    pidfd = fds[0]
    while channel.recv(16):  # blocks until the launcher's end closes; it sends nothing more
        pass
    if not _send(pidfd, signal.SIGTERM):
        return 0  # already reaped: the launcher stopped it
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
    print(f"touchlamp parent watch: {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
