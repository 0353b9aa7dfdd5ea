"""The simulator's web page and JSON API, drawn from what the lamps' pins show.

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

Why asyncio's own streams and not a web framework: ``touchlamp device run --simulate`` is
measured as a lamp (bench/footprint.py, RSS ≤ 45 MB), and aiohttp alone added 10.4 MB to it — a
quarter of the budget — for six routes on a loopback page. asyncio is loaded anyway (by
pydantic-settings), and the parts of HTTP that are easy to get wrong are the standard
library's: header parsing (``http.client.parse_headers``, with its line and count limits),
status phrases (``http.HTTPStatus``), percent-decoding (``urllib.parse``). What is left here is
deliberately small: one request per connection (every response says ``Connection: close``, so
there is no keep-alive or pipelining to get right), no request bodies beyond a bounded,
discarded ``Content-Length`` (the API's POSTs carry none), and a deadline for the request head
so a silent connection cannot stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib.resources
import io
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol
from urllib.parse import unquote, urlsplit

__all__ = [
    "Board",
    "LampView",
    "UnknownLampError",
    "WebServer",
]

_log = logging.getLogger(__name__)

_STATIC_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
_HEAD_LIMIT = 16 * 1024  # request line and headers; a browser sends well under 2 KiB
_BODY_LIMIT = 64 * 1024  # read and dropped: the API's requests carry no body
_HEAD_TIMEOUT = 30.0  # seconds a connection may take to send its request
_STOP_GRACE = 2.0  # seconds requests in flight get to finish when the server stops
_JSON = "application/json"


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


# -- requests and responses ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    segments: tuple[str, ...]  # the path's segments, each percent-decoded: "/" is ("",)


@dataclass(frozen=True, slots=True)
class _Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, with_body: bool = True) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}; charset=utf-8",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers),
            "Connection: close",
            "",
            "",
        ]
        return "\r\n".join(lines).encode("latin-1") + (self.body if with_body else b"")


class _EventStream:
    """The route's answer for ``/api/events``: the connection becomes a stream of snapshots."""


_STREAM = _EventStream()


class _BadRequestError(Exception):
    def __init__(self, status: HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.response = _text(status, text)


def _text(status: HTTPStatus, text: str) -> _Response:
    return _Response(status, text.encode())


def _json(document: object, status: HTTPStatus = HTTPStatus.OK) -> _Response:
    return _Response(status, json.dumps(document).encode(), _JSON)


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    """The next request's method and path; its body (if any) read and dropped."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequestError(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"
        ) from None
    request_line, _, header_block = head.partition(b"\r\n")
    words = request_line.decode("latin-1").split(" ")
    if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request line")
    method, target, _version = words
    try:
        headers = http.client.parse_headers(io.BytesIO(header_block))
    except http.client.HTTPException as error:
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, f"bad headers: {error}") from None
    if headers.get("Transfer-Encoding") is not None:
        raise _BadRequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
    length_text = headers.get("Content-Length", "0").strip()
    if not length_text.isdigit():
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}")
    if int(length_text) > _BODY_LIMIT:
        raise _BadRequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
    # Dropped, but read: closing a socket with unread input resets the connection, and the
    # client could lose the response.
    await reader.readexactly(int(length_text))
    path = urlsplit(target).path
    if not path.startswith("/"):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, f"not a path: {target!r}")
    segments = tuple(unquote(segment) for segment in path[1:].split("/"))
    return _Request(method=method, segments=segments)


# -- routes ----------------------------------------------------------------------------------------
_Handler = Callable[[Board], _Response | _EventStream]
_READ = ("GET", "HEAD")


def _route(board: Board, request: _Request) -> _Response | _EventStream:
    found = _find(request.segments)
    if found is None:
        return _text(HTTPStatus.NOT_FOUND, "no such page; the simulator's page is at /")
    methods, handler = found
    if request.method not in methods:
        return _Response(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here".encode(),
            headers=(("Allow", ", ".join(methods)),),
        )
    return handler(board)


def _find(segments: tuple[str, ...]) -> tuple[tuple[str, ...], _Handler] | None:
    match segments:
        case ("",):
            return _READ, lambda _board: _static_file("index.html")
        case ("static", name):
            return _READ, lambda _board: _static_file(name)
        case ("api", "lamps"):
            return _READ, lambda board: _json(_snapshot(board))
        case ("api", "lamps", lamp_id, "press"):
            return ("POST",), lambda board: _act(board.press, lamp_id)
        case ("api", "lamps", lamp_id, "release"):
            return ("POST",), lambda board: _act(board.release, lamp_id)
        case ("api", "events"):
            return ("GET",), lambda _board: _STREAM
        case _:
            return None


def _static_file(name: str) -> _Response:
    content_type = _STATIC_FILES.get(name)
    if content_type is None:
        return _text(HTTPStatus.NOT_FOUND, f"no static file {name!r}")
    body = (importlib.resources.files("touchlamp.device") / "static" / name).read_bytes()
    return _Response(HTTPStatus.OK, body, content_type)


def _snapshot(board: Board) -> list[dict[str, object]]:
    return [view.to_json() for view in board.views()]


def _act(action: Callable[[str], None], lamp_id: str) -> _Response:
    try:
        action(lamp_id)
    except UnknownLampError:
        error = f"no lamp {lamp_id!r}; GET /api/lamps lists them"
        return _json({"error": error}, HTTPStatus.NOT_FOUND)
    return _json({"ok": True})


# -- the server ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Streams:
    """The open event streams' wake-up events, and whether the server is shutting down."""

    waiting: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False

    def close(self) -> None:
        # Open event streams would otherwise hold the server's shutdown until the page closes.
        self.closing = True
        for changed in self.waiting:
            changed.set()


class WebServer:
    """Serves the page for ``board`` on ``host:port`` (port 0: a free one) from the running loop.

    ``url`` is known after ``start``; ``stop`` ends open event streams and closes the socket.
    """

    def __init__(self, *, board: Board, host: str = "127.0.0.1", port: int = 0) -> None:
        self._board = board
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._streams = _Streams()
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the web server has not started: await start() first")
        return self._url

    async def start(self) -> str:
        # Binding the socket ourselves tells us the port when port 0 asked for a free one.
        sock = _bound_socket(self._host, self._port)
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=_HEAD_LIMIT)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}/"
        return self._url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._streams.close()
        await server.wait_closed()
        # Before 3.12, wait_closed does not wait for the connections: give requests in flight
        # a moment, then cancel what is left (a client that never sent its request).
        if self._connections:
            await asyncio.wait(self._connections, timeout=_STOP_GRACE)
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each connection as a task
        self._connections.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            # The client went away, or never finished asking.
            _log.debug("page connection ended early", exc_info=True)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(_read_request(reader), _HEAD_TIMEOUT)
        except _BadRequestError as bad:
            writer.write(bad.response.encode())
            await writer.drain()
            return
        answer = _route(self._board, request)
        if isinstance(answer, _EventStream):
            await self._stream(reader, writer)
            return
        writer.write(answer.encode(with_body=request.method != "HEAD"))
        await writer.drain()

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A snapshot now, then one after each change, until the page goes or the server stops."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:  # called from any thread
            with contextlib.suppress(RuntimeError):  # the loop is closing; nobody listens any more
                loop.call_soon_threadsafe(changed.set)

        # The page going away ends the stream at once, not at the next change of a lamp.
        gone = loop.create_task(_until_closed(reader))
        gone.add_done_callback(lambda _task: changed.set())
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\n"
            b"Connection: close\r\n"
            b"\r\n"
        )
        self._streams.waiting.add(changed)
        unwatch = self._board.watch(wake)
        try:
            while not (self._streams.closing or gone.done()):
                changed.clear()
                payload = json.dumps(_snapshot(self._board), separators=(",", ":"))
                writer.write(f"data: {payload}\n\n".encode())
                await writer.drain()
                await changed.wait()
        finally:
            unwatch()
            self._streams.waiting.discard(changed)
            gone.cancel()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Return when the client closes its side (anything it sends meanwhile is dropped)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


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
