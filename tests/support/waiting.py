"""The one way a test waits for state that has no event of its own to wait on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WAIT", "wait_until"]

WAIT = 60.0
"""How long a test waits for something that should happen. Generous on purpose: it only runs out
when a test is failing anyway, and a loaded CI machine (or a fault scenario) must not turn a slow
answer into a failure. Never a speed limit: speed is measured in benchmarks (BENCHMARKS.md)."""

_POLL = 0.02

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | bool | None],
    what: str,
    *,
    timeout: float = WAIT,
    wake: threading.Event | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail naming ``what``.

    ``wake``, when given, is an event the code under test sets when something changed: the check
    runs again at once instead of at the next poll.
    """
    pause = wake or threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result  # type: ignore[return-value]  # truthy: the T the caller waits for
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        pause.wait(_POLL)
        pause.clear()
