"""Stopping a child process a test started beside a ``ParentWatch`` (which kills it if the test
run dies first): SIGTERM, SIGKILL after ``timeout``, then the watcher is let go."""

from __future__ import annotations

import subprocess

from touchlamp.broker.parent_watch import ParentWatch

__all__ = ["stop_child"]


def stop_child(
    process: subprocess.Popen[bytes] | None, watcher: ParentWatch | None, *, timeout: float
) -> None:
    """Stop ``process`` (if it still runs) and dismiss its ``watcher``; either may be ``None``."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    if watcher is not None:
        watcher.dismiss()
