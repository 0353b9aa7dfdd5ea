"""Fixtures of the security tests: the attacked world (see world.py) and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.world import SecureWorld


@pytest.fixture(autouse=True)
def _no_touchlamp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings of the machine running the tests must not leak into the relay or device CLI.
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_") or name in {
            "CREDENTIALS_DIRECTORY",
            "STATE_DIRECTORY",
        }:
            monkeypatch.delenv(name)


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., SecureWorld]]:
    """Build the world with relay settings of the test's own (e.g. ``pairing={...}``)."""
    made: list[SecureWorld] = []

    def make(**relay_overrides: Any) -> SecureWorld:
        world = SecureWorld(tmp_path / f"world-{len(made)}", **relay_overrides)
        made.append(world)
        world.exchange()  # the legitimate pair works before any attack
        return world

    yield make
    for world in made:
        world.close()


@pytest.fixture
def world(make_world: Callable[..., SecureWorld]) -> SecureWorld:
    """The world with the relay's default pairing limits."""
    return make_world()
