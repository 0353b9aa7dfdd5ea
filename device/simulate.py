"""Serve simulated lamps' page until a signal: ``device run --simulate`` and ``sim --env-file``.

``run_simulator`` runs lamps that are already enrolled with some relay on mock pins and serves
their page; ``serve_page`` is shared with the demo (``touchlamp.demo``), which adds a broker and
a relay of its own around them. Both stop on SIGTERM, SIGINT or SIGHUP (``touchlamp.stopping``).

This is a module of its own, not a part of the demo, because a simulated lamp is measured as a
lamp (bench/footprint.py): importing the demo would bring the relay, its store, Prometheus'
client and the broker launcher into a lamp's process (3.1 MB of its RSS) for nothing.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from pathlib import Path

from touchlamp.config.device import DeviceSettings
from touchlamp.device.agent import freeze_start_up_objects
from touchlamp.device.sim import Simulator
from touchlamp.device.web import WebServer
from touchlamp.errors import EXIT_OK, TouchlampError
from touchlamp.stopping import StopSignals

__all__ = ["PREFERRED_WEB_PORT", "ServeError", "run_simulator", "serve_page"]

PREFERRED_WEB_PORT = 8080
"""The demo's port; when it is taken, the page is served on any free one instead."""


class ServeError(TouchlampError, RuntimeError):
    """The page could not be served; the message says why and what to do."""


def run_simulator(
    *,
    lamps: list[DeviceSettings],
    web_port: int,
    web_host: str = "127.0.0.1",
    env_files: Mapping[str, Path] | None = None,
) -> int:
    """Serve the page for ``lamps`` (enrolled elsewhere) until SIGTERM, SIGINT or SIGHUP."""

    def ready(url: str) -> None:
        names = ", ".join(lamp.lamp_id for lamp in lamps)
        print(f"touchlamp: simulating {names}; touch them at {url}", flush=True)

    # A signal while the lamps start interrupts that, so it unwinds at once.
    with (
        StopSignals(interrupt_until_ready=True) as stop,
        Simulator(lamps=lamps, env_files=env_files) as simulator,
    ):
        serve_page(simulator, web_port, stop, ready, host=web_host)
    return EXIT_OK


def serve_page(
    simulator: Simulator,
    web_port: int,
    stop: StopSignals,
    ready: Callable[[str], None],
    *,
    host: str = "127.0.0.1",
) -> None:
    """Serve ``simulator``'s page, call ``ready(url)``, and return once ``stop`` is requested."""
    server = WebServer(board=simulator, host=host, port=web_port)
    try:
        url = server.start()
    except OSError as error:
        if web_port != PREFERRED_WEB_PORT or error.errno != errno.EADDRINUSE:
            raise ServeError(str(error)) from None
        server = WebServer(board=simulator, host=host, port=0)  # 8080 is taken: any free one
        url = server.start()
    try:
        freeze_start_up_objects()  # the lamps and the page are up
        stop.ready()
        ready(url)
        stop.wait()
    finally:
        server.stop()
