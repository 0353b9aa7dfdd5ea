"""The one way tests run a relay in their own process: started, connected and subscribed before
the test goes on, stopped however the test ends. (A relay as a child process that a scenario can
kill is ``RelayProcess`` in tests/faults/world.py: the fault suite is its only user.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.waiting import WAIT
from touchlamp.config.relay import RelaySettings
from touchlamp.server.relay import Relay
from touchlamp.server.store import Store

__all__ = ["running_relay"]


@contextmanager
def running_relay(
    settings: RelaySettings, store: Store, *, clock: Callable[[], float] = time.time
) -> Iterator[Relay]:
    """A ``Relay`` on ``store`` with a wall ``clock`` (``time.time``), connected to its broker."""
    relay = Relay(settings=settings, store=store, clock=clock)
    relay.start()
    try:
        assert relay.wait_connected(WAIT), "the relay did not connect and subscribe"
        yield relay
    finally:
        relay.stop()
