"""Fixtures of the fault scenarios: a ``world`` on the ``broker`` fixture, and ``make_broker``
for a scenario that needs a broker with other limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.world import FaultWorld
from tests.support.broker import BrokerFixture, start_managed_broker


@pytest.fixture
def world(broker: BrokerFixture, tmp_path: Path) -> Iterator[FaultWorld]:
    made = FaultWorld(broker, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., BrokerFixture]]:
    """``make_broker(**BrokerSettings fields)``: a broker of the test's own, stopped at the end."""
    made: list[BrokerFixture] = []

    def make(**settings: object) -> BrokerFixture:
        fixture = BrokerFixture(start_managed_broker(tmp_path / f"broker-{len(made)}", **settings))
        made.append(fixture)
        return fixture

    yield make
    for fixture in made:
        fixture.close()
