"""The simulator's web page and JSON API (aiohttp), drawn from what the lamps' pins show.

Routes::

    GET  /                         the page (device/static/)
    GET  /api/lamps                [{"id", "name", "online", "led": [r, g, b], "color", "gamma"}]
    POST /api/lamps/{id}/press     touch the lamp (held until release)
    POST /api/lamps/{id}/release   let go
    GET  /api/events               server-sent events: the same list, whenever a lamp changes

``led`` is the PWM duty of the lamp's red, green and blue pins (0..1, linear light); ``color`` is
the lamp's own colour and ``gamma`` the curve its core applied, so the page can turn the pin
values back into what an eye would see (``looks.to_perceived``).

Live updates are pushed, not polled: a ``Board`` calls its watchers from the lamp threads, which
only set an ``asyncio.Event`` (thread-safely); each event stream then sends one fresh snapshot.
Bursts (a fade redrawn at 30 frames a second) coalesce into as many snapshots as the client
reads, and nothing runs while the lamps are still.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

__all__ = [
    "Board",
    "LampView",
    "UnknownLampError",
    "WebServer",
    "create_app",
]

_log = logging.getLogger(__name__)

_STATIC_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}


class UnknownLampError(KeyError):
    """No lamp with that id on this board."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LampView:
    """One lamp as the page shows it: its pins' values right now and how to read them."""

    id: str
    name: str
    online: bool
    led: tuple[float, float, float]
    color: str
    gamma: float

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "online": self.online,
            "led": [round(value, 6) for value in self.led],
            "color": self.color,
            "gamma": self.gamma,
        }


class Board(Protocol):
    """The lamps behind the page (the simulator implements it)."""

    def views(self) -> list[LampView]:
        """Every lamp, in a stable order."""
        ...

    def press(self, lamp_id: str) -> None:
        """Touch ``lamp_id``; ``UnknownLampError`` if there is no such lamp."""
        ...

    def release(self, lamp_id: str) -> None:
        """Let go of ``lamp_id``; ``UnknownLampError`` if there is no such lamp."""
        ...

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from any thread) after a lamp changes; returns the unsubscriber."""
        ...


@dataclass(slots=True)
class _Streams:
    """The open event streams' wake-up events, and whether the server is shutting down."""

    waiting: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False


_BOARD = web.AppKey("board", Board)
_STREAMS = web.AppKey("streams", _Streams)


def create_app(*, board: Board) -> web.Application:
    """The page, the JSON API and the event stream for ``board``."""
    app = web.Application()
    app[_BOARD] = board
    app[_STREAMS] = _Streams()
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/lamps", _lamps)
    app.router.add_post("/api/lamps/{lamp_id}/press", _press)
    app.router.add_post("/api/lamps/{lamp_id}/release", _release)
    app.router.add_get("/api/events", _events)
    app.on_shutdown.append(_end_streams)
    return app


def _read_static(name: str) -> bytes:
    return (importlib.resources.files("touchlamp.device") / "static" / name).read_bytes()


async def _index(_request: web.Request) -> web.Response:
    return web.Response(body=_read_static("index.html"), content_type="text/html", charset="utf-8")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text=f"no static file {name!r}")
    return web.Response(body=_read_static(name), content_type=content_type, charset="utf-8")


def _snapshot(board: Board) -> list[dict[str, object]]:
    return [view.to_json() for view in board.views()]


async def _lamps(request: web.Request) -> web.Response:
    return web.json_response(_snapshot(request.app[_BOARD]))


async def _press(request: web.Request) -> web.Response:
    return _act(request, request.app[_BOARD].press)


async def _release(request: web.Request) -> web.Response:
    return _act(request, request.app[_BOARD].release)


def _act(request: web.Request, action: Callable[[str], None]) -> web.Response:
    lamp_id = request.match_info["lamp_id"]
    try:
        action(lamp_id)
    except UnknownLampError:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no lamp {lamp_id!r}; GET /api/lamps lists them"}),
            content_type="application/json",
        ) from None
    return web.json_response({"ok": True})


async def _events(request: web.Request) -> web.StreamResponse:
    app = request.app
    board = app[_BOARD]
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:  # called from any thread
        with contextlib.suppress(RuntimeError):  # the loop is closing; nobody listens any more
            loop.call_soon_threadsafe(changed.set)

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    streams = app[_STREAMS]
    streams.waiting.add(changed)
    unwatch = board.watch(wake)
    try:
        while not streams.closing:
            changed.clear()
            payload = json.dumps(_snapshot(board), separators=(",", ":"))
            await response.write(f"data: {payload}\n\n".encode())
            await changed.wait()
    except ConnectionResetError:
        # Noticed at the first write after the page went away (or at shutdown).
        _log.debug("event stream closed by the page")
    finally:
        unwatch()
        streams.waiting.discard(changed)
    return response


async def _end_streams(app: web.Application) -> None:
    # Open event streams would hold the server's shutdown for its whole timeout.
    streams = app[_STREAMS]
    streams.closing = True
    for changed in streams.waiting:
        changed.set()


class WebServer:
    """Serves ``create_app(board=…)`` on ``host:port`` (port 0: a free one) from the running loop.

    ``url`` is known after ``start``; ``stop`` ends open event streams and closes the socket.
    """

    def __init__(self, *, board: Board, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = create_app(board=board)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the web server has not started: await start() first")
        return self._url

    async def start(self) -> str:
        # Binding the socket ourselves tells us the port when port 0 asked for a free one.
        sock = _bound_socket(self._host, self._port)
        runner = web.AppRunner(self._app, handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}/"
        return self._url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(
            error.errno,
            f"cannot serve the page on {host}:{port} ({error.strerror}); "
            "choose another port with --web-port (0 picks a free one)",
        ) from None
    return sock
