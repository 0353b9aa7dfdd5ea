"""Serve simulated lamps' page until a signal: ``device run --simulate`` and ``sim --env-file``.

``run_simulator`` runs lamps that are already enrolled with some relay on mock pins and serves
their page; ``serve_page`` and ``Shutdown`` are shared with the demo (demo.py), which adds a
broker and a relay of its own around them.

This is a module of its own, not a part of demo.py, because a simulated lamp is measured as a
lamp (bench/footprint.py): importing demo.py would bring the relay, its store, Prometheus'
client and the broker launcher into a lamp's process (3.1 MB of its RSS) for nothing.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from touchlamp.cli import EXIT_FAILURE, EXIT_OK
from touchlamp.config.device import DeviceSettings
from touchlamp.device.sim import Simulator
from touchlamp.device.web import WebServer

__all__ = ["PREFERRED_WEB_PORT", "ServeError", "Shutdown", "run_simulator", "serve_page"]

PREFERRED_WEB_PORT = 8080
"""The demo's port; when it is taken, the page is served on any free one instead."""


class ServeError(RuntimeError):
    """The page could not be served; the message says why and what to do."""


def run_simulator(
    *,
    lamps: list[DeviceSettings],
    web_port: int,
    web_host: str = "127.0.0.1",
    env_files: Mapping[str, Path] | None = None,
) -> int:
    """Serve the page for ``lamps`` (enrolled elsewhere) until SIGINT or SIGTERM."""

    def ready(url: str) -> None:
        names = ", ".join(lamp.lamp_id for lamp in lamps)
        print(f"touchlamp: simulating {names}; touch them at {url}", flush=True)

    with Shutdown() as shutdown:
        simulator = Simulator(lamps=lamps, env_files=env_files)
        try:
            simulator.start()
            serve_page(simulator, web_port, shutdown, ready, host=web_host)
        except ServeError as error:
            print(f"touchlamp: {error}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            simulator.stop()
    return EXIT_OK


def serve_page(
    simulator: Simulator,
    web_port: int,
    shutdown: Shutdown,
    ready: Callable[[str], None],
    *,
    host: str = "127.0.0.1",
) -> None:
    """Serve ``simulator``'s page, call ``ready(url)``, and return once ``shutdown`` fires."""
    server = WebServer(board=simulator, host=host, port=web_port)
    try:
        url = server.start()
    except OSError as error:
        if web_port != PREFERRED_WEB_PORT or error.errno != errno.EADDRINUSE:
            raise ServeError(str(error)) from None
        server = WebServer(board=simulator, host=host, port=0)  # 8080 is taken: any free one
        url = server.start()
    try:
        shutdown.serving()
        ready(url)
        shutdown.wait()
    finally:
        shutdown.stopping()
        server.stop()


class Shutdown:
    """SIGINT and SIGTERM, handled so that everything started is stopped again.

    Before the page is served, a signal raises ``KeyboardInterrupt`` so set-up unwinds through
    its ``finally`` blocks (stopping Mosquitto among them); while serving, it ends ``wait``;
    once stopping, further signals are ignored so clean-up is not cut short.
    """

    def __init__(self) -> None:
        self._serving = False
        self._stopping = False
        self._previous: dict[int, object] = {}
        # The handler wakes ``wait`` through a socket, not a threading.Event: a handler runs in
        # the main thread between two bytecodes, possibly while that thread holds the Event's
        # lock inside Event.wait, and setting it there would deadlock.
        self._alarm, self._ring = socket.socketpair()

    def __enter__(self) -> Shutdown:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal.signal returned
        self._alarm.close()
        self._ring.close()

    def serving(self) -> None:
        """From now on a signal ends ``wait`` instead of raising ``KeyboardInterrupt``."""
        self._serving = True

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM (after ``serving``). Main thread only."""
        self._alarm.recv(1)

    def stopping(self) -> None:
        self._serving = False
        self._stopping = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            print("touchlamp: already stopping…", file=sys.stderr, flush=True)
            return
        if self._serving:
            name = signal.Signals(signum).name
            print(f"touchlamp: {name}, stopping", file=sys.stderr, flush=True)
            self._ring.send(b"!")
            return
        self._stopping = True
        raise KeyboardInterrupt
