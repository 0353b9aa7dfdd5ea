"""Fixtures of the deployment tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.live import Site
from tests.support.broker import BrokerFixture
from touchlamp.doctor import Probes
from touchlamp.server.store import open_store


@pytest.fixture
def pi(tmp_path: Path) -> Probes:
    """A Pi as doctor's checks see it: a GPIO chip in /dev, groups that exist, lgpio present, a
    synchronised clock, and no systemd running (the service check is skipped)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "gpiochip0").touch()
    (dev / "gpiochip0").chmod(0o660)  # as Raspberry Pi OS's udev rule leaves it (group gpio)
    return Probes(
        dev_dir=dev,
        clock_check=lambda: True,
        service_state=lambda _unit: None,
        lgpio=lambda: ("installed", ""),
        group_id=lambda _name: os.getgid(),
        timeout=3.0,
    )


@pytest.fixture
def site(broker: BrokerFixture, tmp_path: Path) -> Iterator[Site]:
    """The relay tests' world (the shared broker, a SQLite store), for doctor's tests."""
    store = open_store(tmp_path / "relay.sqlite3")
    world = Site(broker, store)
    yield world
    world.close()
    store.close()
