"""``with`` blocks on the parts that run or hold something (touchlamp.lifecycle): the part is
let go when the block ends, and a part that cannot start lets go of what it took, not more."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from touchlamp.device.control import CONTROL_SOCKET, ControlError, ControlServer
from touchlamp.protocol import PairRequest, PairResponse
from touchlamp.server.store import open_store


class _UnusedLink:
    """No pairing request reaches it in these tests: only the socket's life is looked at."""

    def request(self, request: PairRequest, *, timeout: float = 10.0) -> PairResponse:
        raise AssertionError(f"unexpected {request} (timeout {timeout})")


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
        return True


def test_a_store_is_closed_when_its_block_ends_and_keeps_what_was_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.sqlite3"
    with open_store(path) as store:
        store.add_lamp("lamp-a", name="A", color="#336699", now_ms=0)

    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.list_lamps()
    with open_store(path) as again:
        assert [lamp.id for lamp in again.list_lamps()] == ["lamp-a"]


def test_a_control_server_that_cannot_start_leaves_the_running_one_alone(
    tmp_path: Path,
) -> None:
    socket_path = tmp_path / CONTROL_SOCKET
    with ControlServer(state_dir=tmp_path, link=_UnusedLink()):
        assert _answers(socket_path)
        # A second lamp service on the same state directory: refused, and the stop that
        # follows a failed start must not take the first one's socket with it.
        with (
            pytest.raises(ControlError, match="already runs"),
            ControlServer(state_dir=tmp_path, link=_UnusedLink()),
        ):
            pass
        assert _answers(socket_path)

    assert not socket_path.exists()
