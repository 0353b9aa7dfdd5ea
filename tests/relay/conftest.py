"""Fixtures for the relay tests: a real SQLite store in the test's temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from touchlamp.server.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "relay.sqlite3")
    yield opened
    opened.close()
