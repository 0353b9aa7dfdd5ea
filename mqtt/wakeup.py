"""Waking a thread that waits in ``select``: an eventfd (Linux) or a self-pipe elsewhere.

A loop that owns a paho client waits for its socket with ``select`` (mqtt/driver.py). Anything
another thread wants of it — an event posted, a message published that has to be written — must
wake that wait; a ``threading.Event`` cannot, a file descriptor in the same ``select`` can.
``notify`` is called from any thread (gpiozero's, the web server's) and costs one write;
``clear`` is for the owner, before it looks at what it was woken for (a notify after the clear
wakes the next wait, so none is lost).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading

__all__ = ["Wakeup"]


class Wakeup:
    """A file descriptor that becomes readable when ``notify`` is called, until ``clear``."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self._read = self._write = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover  (not Linux)
            self._read, self._write = os.pipe()
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)
        # Held around writing and closing: a notify after close must not write to a number the
        # system may have given to another file meanwhile.
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self) -> int:
        return self._read

    def notify(self) -> None:
        """Wake the owner's wait (any thread; cheap when it is already woken)."""
        with self._lock:
            if self._closed:
                return  # the owner has stopped
            # Full of wake-ups already (BlockingIOError): it is readable, all that counts.
            with contextlib.suppress(BlockingIOError):
                os.write(self._write, (1).to_bytes(8, "little"))

    def clear(self) -> None:
        """Forget the wake-ups so far (the owner's thread, before it looks why it woke)."""
        try:
            while os.read(self._read, 4096):
                if self._read == self._write:
                    return  # an eventfd is emptied by one read
        except (BlockingIOError, OSError):
            return

    def wait(self, timeout: float | None) -> bool:
        """Wait until notified (True) or ``timeout`` seconds pass (False; None: no limit)."""
        try:
            return bool(select.select([self._read], [], [], timeout)[0])
        except (OSError, ValueError):  # closed under us
            return True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in {self._read, self._write}:
                os.close(fd)
