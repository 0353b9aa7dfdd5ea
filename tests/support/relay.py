"""The one way tests run a relay in their own process: started, connected and subscribed before
the test goes on, stopped however the test ends. (A relay as a child process that a scenario can
kill is ``RelayProcess`` in tests/faults/world.py: the fault suite is its only user.)"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.waiting import WAIT
from touchlamp.config.relay import RelaySettings
from touchlamp.server.relay import Relay
from touchlamp.server.store import Store

__all__ = ["relay_metrics", "running_relay"]


@contextmanager
def running_relay(
    settings: RelaySettings, store: Store, *, clock: Callable[[], float] = time.time
) -> Iterator[Relay]:
    """A ``Relay`` on ``store`` with a wall ``clock`` (``time.time``), connected to its broker."""
    with Relay(settings=settings, store=store, clock=clock) as relay:
        assert relay.wait_connected(WAIT), "the relay did not connect and subscribe"
        yield relay


def relay_metrics(port: int) -> dict[str, float]:
    """A relay's Prometheus counters and gauges from its ``/metrics`` on ``port``, by sample
    name with labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
