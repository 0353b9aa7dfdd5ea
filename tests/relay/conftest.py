"""Fixtures for the relay tests: a real store, and a "site" (broker + store + topic root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.live import Site
from tests.relay.store_backends import fresh_backend
from tests.support.broker import BrokerFixture
from touchlamp.server.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "relay.sqlite3")
    yield opened
    opened.close()


@pytest.fixture
def site(broker: BrokerFixture, store: Store) -> Iterator[Site]:
    """A broker, a SQLite store and a topic root of the test's own."""
    world = Site(broker, store)
    yield world
    world.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site_on_each_backend(
    request: pytest.FixtureRequest, broker: BrokerFixture, tmp_path: Path
) -> Iterator[Site]:
    """Like ``site``, once with SQLite and once with PostgreSQL (skipped if none answers)."""
    with fresh_backend(request.param, tmp_path) as backend:
        opened = backend.open()
        world = Site(broker, opened)
        try:
            yield world
        finally:
            world.close()
            opened.close()
