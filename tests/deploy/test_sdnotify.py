"""``touchlamp.sdnotify`` speaks systemd's notify protocol to a real datagram socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from touchlamp import sdnotify


@pytest.fixture
def systemd_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """What systemd listens on for a ``Type=notify`` service, named by ``$NOTIFY_SOCKET``."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield server


def received(server: socket.socket) -> str:
    return server.recv(4096).decode()


def test_ready_watchdog_status_and_stopping_reach_systemd(systemd_socket: socket.socket) -> None:
    assert sdnotify.ready("connected to broker.example:8883")
    assert received(systemd_socket) == "READY=1\nSTATUS=connected to broker.example:8883"
    assert sdnotify.watchdog()
    assert received(systemd_socket) == "WATCHDOG=1"
    assert sdnotify.status("reconnecting\nin 5 s")
    assert received(systemd_socket) == "STATUS=reconnecting in 5 s"
    assert sdnotify.stopping()
    assert received(systemd_socket) == "STOPPING=1"


def test_abstract_socket_names_start_with_at(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"touchlamp-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert received(server) == "READY=1"


def test_outside_systemd_every_call_is_a_harmless_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready()
    assert not sdnotify.watchdog()
    assert not sdnotify.status("idle")


def test_a_vanished_socket_is_reported_once_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sdnotify, "_warned", False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sdnotify.watchdog()
    assert not sdnotify.watchdog()
    warnings = [record for record in caplog.records if "NOTIFY_SOCKET" in record.getMessage()]
    assert len(warnings) == 1
    assert "will be restarted" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "1", None),  # the watchdog watches another process (our parent)
        ("0", None, None),
        ("", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval_follows_sd_watchdog_enabled(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, expected: float | None
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert sdnotify.watchdog_interval() == expected
    assert sdnotify.watchdog_due_every() == (None if expected is None else expected / 2)


def test_no_watchdog_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
