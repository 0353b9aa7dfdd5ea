"""The lamps' web pages and JSON API, drawn from what the lamps' pins show.

Routes::

    GET  /                         the lamps as drawn (device/static/index.html); a real lamp's
                                   board sends its owner straight to the lamp's own page
    GET  /lamp/{id}/               the lamp's own page (device/static/owner.html)
    GET  /api/lamps                [{"id", "name", "online", "led": [r, g, b], "color", "gamma",
                                     "revision"}]
    POST /api/lamps/{id}/press     touch the lamp (held until release; simulated lamps only)
    POST /api/lamps/{id}/release   let go
    GET  /api/events               server-sent events: the same list, whenever a lamp changes
    …    /api/lamps/{id}/…         the owner's API (device/owner_page.py)

``revision`` counts the changes of a lamp's status other than its light (a touch received, a
member coming online): the lamp's page fetches the status again when it moves.

Every POST whose ``Origin`` is not the page's own is refused (403) before it reaches a route,
so another site open in the owner's browser cannot make it change the lamp (the session
cookie is SameSite=Strict as well). Every response forbids framing and scripts from elsewhere.

``led`` is the PWM duty of the lamp's red, green and blue pins (0..1, linear light); ``color`` is
the lamp's own colour and ``gamma`` the curve its core applied, so the page can turn the pin
values back into what an eye would see (``looks.to_perceived``).

Live updates are pushed, not polled: a ``Board`` calls its watchers from the lamp threads, which
only set a ``threading.Event``; each event stream then sends one fresh snapshot. Bursts (a fade
redrawn at 30 frames a second) coalesce into as many snapshots as the client reads, and nothing
runs while the lamps are still.

Why the standard library's ``http.server`` and not a web framework: ``touchlamp device run
--simulate`` is measured as a lamp (bench/footprint.py, RSS ≤ 45 MB), and aiohttp alone added
10.4 MB to it — a quarter of the budget — for six routes on a loopback page; ``http.server``
costs a lamp next to nothing (it brings ``socketserver``, ``html`` and ``mimetypes``, and no
event loop). It parses the request line and headers, answers what it cannot parse (400, 414,
431, 501 for a method it has no handler for, 505 for HTTP/2) and frames the responses; what is
left here is the routes, the event streams and a stop that does not wait for the page to close.

Its limits, which suit a page on 127.0.0.1 and would not suit a public server: a thread per
connection (two for an event stream: one writes, one notices the page hanging up), one request
per connection (every response says ``Connection: close``), request bodies only with a
``Content-Length`` of at most 64 KiB (JSON for the owner's API), and a request head bounded
by ``http.server``'s own limits (a request line of 64 KiB, 99 header lines of 64 KiB each)
with each read of it waiting at most ``_HEAD_TIMEOUT`` seconds, not a deadline for the whole.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from touchlamp.device.owner_auth import SESSION_SECONDS
from touchlamp.device.owner_page import OwnerAnswer, OwnerLamp, OwnerRequest
from touchlamp.errors import TouchlampError
from touchlamp.lifecycle import StopsOnExit

__all__ = [
    "Board",
    "LampView",
    "TouchRefusedError",
    "UnknownLampError",
    "Watchers",
    "WebServer",
]

_log = logging.getLogger(__name__)

_STATIC_FILES = {
    "index.html": "text/html",
    "owner.html": "text/html",
    "owner.js": "text/javascript",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
_BODY_LIMIT = 64 * 1024  # the owner's API takes small JSON bodies; nothing needs more
_HEAD_TIMEOUT = 30.0  # seconds each read of a request may wait, so a silent client goes away
_STOP_GRACE = 2.0  # seconds responses being written get to finish when the server stops
_JSON = "application/json"
_SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


class UnknownLampError(TouchlampError, KeyError):
    """No lamp with that id on this board."""


class TouchRefusedError(TouchlampError):
    """The board does not take touches from the page (a real lamp is touched by hand)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LampView:
    """One lamp as the page shows it: its pins' values right now and how to read them."""

    id: str
    name: str
    online: bool
    led: tuple[float, float, float]
    color: str
    gamma: float
    revision: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "online": self.online,
            "led": [round(value, 6) for value in self.led],
            "color": self.color,
            "gamma": self.gamma,
            "revision": self.revision,
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

    def owner(self, lamp_id: str) -> OwnerLamp:
        """``lamp_id``'s owner API; ``UnknownLampError`` if there is no such lamp."""
        ...

    @property
    def home(self) -> str | None:
        """Where ``/`` sends the browser (a real lamp's own page), or None for the lamps' page."""
        ...


class Watchers:
    """The callbacks of ``Board.watch``: added and removed from any thread, called from any."""

    def __init__(self) -> None:
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            key = self._next
            self._next += 1
            self._callbacks[key] = callback

        def unwatch() -> None:
            with self._lock:
                self._callbacks.pop(key, None)

        return unwatch

    def notify(self) -> None:
        with self._lock:
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            callback()


# -- responses -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()


class _EventStream:
    """The route's answer for ``/api/events``: the connection becomes a stream of snapshots."""


_STREAM = _EventStream()


class _BadRequestError(TouchlampError):
    def __init__(self, status: HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.response = _text(status, text)


def _text(status: HTTPStatus, text: str) -> _Response:
    return _Response(status, text.encode())


def _json(document: object, status: HTTPStatus = HTTPStatus.OK) -> _Response:
    return _Response(status, json.dumps(document).encode(), _JSON)


def _segments(target: str) -> tuple[str, ...]:
    """The request target's path segments, each percent-decoded: "/" is ("",)."""
    path = urlsplit(target).path
    if not path.startswith("/"):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, f"not a path: {target!r}")
    return tuple(unquote(segment) for segment in path[1:].split("/"))


def _read_body(headers: Message, body: BufferedIOBase) -> bytes:
    """The request's body (if any); refuse one that is chunked or too large."""
    if headers.get("Transfer-Encoding") is not None:
        raise _BadRequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
    length_text = headers.get("Content-Length", "0").strip()
    if not (length_text.isascii() and length_text.isdigit()):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}")
    if int(length_text) > _BODY_LIMIT:
        raise _BadRequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
    # Read even when unused: closing a socket with unread input resets the connection, and
    # the client could lose the response.
    return body.read(int(length_text))


def _check_origin(method: str, headers: Message) -> None:
    """Refuse a POST sent by a page from another origin (what a browser says in ``Origin``).

    A request without ``Origin`` is not a browser's cross-site request (browsers send it with
    every POST), and the API's other clients (scripts, tests) need not send it.
    """
    origin = headers.get("Origin")
    if method != "POST" or origin is None:
        return
    host = headers.get("Host")
    if host is None or origin not in (f"http://{host}", f"https://{host}"):
        raise _BadRequestError(
            HTTPStatus.FORBIDDEN,
            f"refused: a request from {origin} may not change this lamp "
            "(open the lamp's own page to change it)",
        )


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    segments: tuple[str, ...]
    body: bytes
    cookies: Mapping[str, str]


def _cookies(headers: Message) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in headers.get_all("Cookie") or []:
        try:
            jar.load(header)
        except CookieError:
            continue  # a cookie another page set in a form we do not read
    return {name: morsel.value for name, morsel in jar.items()}


# -- routes ----------------------------------------------------------------------------------------
_Handler = Callable[["Board", _Request], "_Response | _EventStream"]
_READ = ("GET", "HEAD")


def _route(board: Board, request: _Request) -> _Response | _EventStream:
    found = _find(request.segments)
    if found is None:
        return _text(HTTPStatus.NOT_FOUND, "no such page; the lamps' page is at /")
    methods, handler = found
    if request.method not in methods:
        return _Response(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here".encode(),
            headers=(("Allow", ", ".join(methods)),),
        )
    return handler(board, request)


def _find(segments: tuple[str, ...]) -> tuple[tuple[str, ...], _Handler] | None:
    match segments:
        case ("",):
            return _READ, lambda board, _request: _home(board)
        case ("static", name):
            return _READ, lambda _board, _request: _static_file(name)
        case ("lamp", lamp_id, ""):
            return _READ, lambda board, _request: _owner_page(board, lamp_id)
        case ("lamp", lamp_id):
            return _READ, lambda _board, _request: _redirect(f"/lamp/{lamp_id}/")
        case ("api", "lamps"):
            return _READ, lambda board, _request: _json(_snapshot(board))
        case ("api", "lamps", lamp_id, "press"):
            return ("POST",), lambda board, _request: _act(board.press, lamp_id)
        case ("api", "lamps", lamp_id, "release"):
            return ("POST",), lambda board, _request: _act(board.release, lamp_id)
        case ("api", "lamps", lamp_id, *rest) if rest:
            return ("GET", "POST"), lambda board, request: _owner(board, lamp_id, request)
        case ("api", "events"):
            return ("GET",), lambda _board, _request: _STREAM
        case _:
            return None


def _home(board: Board) -> _Response:
    home = board.home
    return _static_file("index.html") if home is None else _redirect(home)


def _redirect(location: str) -> _Response:
    return _Response(HTTPStatus.SEE_OTHER, headers=(("Location", location),))


def _owner_page(board: Board, lamp_id: str) -> _Response:
    try:
        board.owner(lamp_id)
    except UnknownLampError:
        return _text(HTTPStatus.NOT_FOUND, f"no lamp {lamp_id!r} here; the lamps' page is at /")
    return _static_file("owner.html")


def _owner(board: Board, lamp_id: str, request: _Request) -> _Response:
    try:
        owner = board.owner(lamp_id)
    except UnknownLampError:
        error = f"no lamp {lamp_id!r}; GET /api/lamps lists them"
        return _json({"error": error}, HTTPStatus.NOT_FOUND)
    body: Any = {}
    if request.body.strip():
        try:
            body = json.loads(request.body)
        except ValueError:
            return _json({"error": "the request's body is not JSON"}, HTTPStatus.BAD_REQUEST)
        if not isinstance(body, dict):
            return _json({"error": "send a JSON object"}, HTTPStatus.BAD_REQUEST)
    answer = owner.handle(
        OwnerRequest(
            method=request.method,
            path=request.segments[3:],
            body=body,
            session=request.cookies.get(owner.cookie_name),
        )
    )
    return _owner_response(owner, answer)


def _owner_response(owner: OwnerLamp, answer: OwnerAnswer) -> _Response:
    headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
    if answer.session is not None:
        lifetime = int(SESSION_SECONDS) if answer.session else 0
        cookie = f"{owner.cookie_name}={answer.session}; Path=/; Max-Age={lifetime}"
        headers.append(("Set-Cookie", f"{cookie}; HttpOnly; SameSite=Strict"))
    if answer.retry_after is not None:
        headers.append(("Retry-After", str(max(1, round(answer.retry_after)))))
    body = json.dumps(answer.document).encode()
    return _Response(answer.status, body, _JSON, tuple(headers))


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
    except TouchRefusedError as refused:
        return _json({"error": str(refused)}, HTTPStatus.FORBIDDEN)
    return _json({"ok": True})


# -- the server ------------------------------------------------------------------------------------
class _PageServer(ThreadingHTTPServer):
    """``http.server`` with the board, and a record of open connections so a stop can end them.

    Without that record, a stop would wait for every open event stream (until the page closes)
    and for every silent client (until its read times out).
    """

    def __init__(self, board: Board, host: str, port: int) -> None:
        self.board = board
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._closed = threading.Condition()
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _PageHandler)

    def verify_request(self, _request: object, _client_address: object) -> bool:
        # Once stopping, a new connection (the stop's own wake-up among them) is just closed.
        return not self.stopping.is_set()

    def opened(self, connection: socket.socket) -> None:
        """Called from the connection's thread as it starts."""
        with self._closed:
            self._open.add(connection)
            if self.stopping.is_set():  # it slipped past the stop's hang_up
                _shut(connection, socket.SHUT_RD)

    def closed(self, connection: socket.socket) -> None:
        """Called from the connection's thread as it ends."""
        with self._closed:
            self._open.discard(connection)
            self._closed.notify_all()

    def hang_up(self, how: int) -> None:
        """Shut every open connection (``SHUT_RD``: stop reading; ``SHUT_RDWR``: writing too)."""
        with self._closed:
            for connection in self._open:
                _shut(connection, how)

    def wait_closed(self, timeout: float) -> None:
        with self._closed:
            self._closed.wait_for(lambda: not self._open, timeout)

    def handle_error(self, _request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            _log.debug("page connection from %s ended early: %s", client_address, error)
            return
        _log.exception("the page's request from %s failed", client_address)


class _PageHandler(BaseHTTPRequestHandler):
    """One connection, one request: routes it, or turns the connection into an event stream."""

    server: _PageServer
    # HTTP/1.1 on the status line, but every response says ``Connection: close``.
    protocol_version = "HTTP/1.1"
    # A request line too broken to name a version is answered with a status line and headers,
    # not as HTTP/0.9 (http.server's default: the error's text alone).
    default_request_version = "HTTP/1.0"
    server_version = "touchlamp"
    timeout = _HEAD_TIMEOUT
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.closed(self.connection)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  the base's name
        # http.server writes every request to stderr; a lamp's log is not the place for them.
        _log.debug("page %s: " + format, self.address_string(), *args)

    def _answer(self) -> None:
        try:
            segments = _segments(self.path)
            body = _read_body(self.headers, self.rfile)
            _check_origin(self.command, self.headers)
        except _BadRequestError as bad:
            self._send(bad.response)
            return
        request = _Request(self.command, segments, body, _cookies(self.headers))
        answer = _route(self.server.board, request)
        if isinstance(answer, _EventStream):
            self._stream()
        else:
            self._send(answer)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", f"{response.content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in (*response.headers, *_SECURITY_HEADERS):
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _stream(self) -> None:
        """A snapshot now, then one after each change, until the page goes or the server stops."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        # From here on the page only listens: no read deadline, or the stream would end after
        # _HEAD_TIMEOUT seconds of still lamps. What ends it is the page hanging up, or the
        # server's stop shutting the socket.
        self.connection.settimeout(None)
        changed = threading.Event()
        hung_up = threading.Event()
        listener = threading.Thread(
            target=_until_hung_up,
            args=(self.connection, hung_up, changed),
            name="page-events-hangup",
            daemon=True,
        )
        unwatch = self.server.board.watch(changed.set)
        listener.start()
        try:
            while not hung_up.is_set():
                changed.clear()
                payload = json.dumps(_snapshot(self.server.board), separators=(",", ":"))
                self.wfile.write(f"data: {payload}\n\n".encode())
                changed.wait()
        except OSError as error:  # the page went away while a snapshot was on its way
            _log.debug("page event stream ended: %s", error)
        finally:
            unwatch()
            _shut(self.connection, socket.SHUT_RD)  # ends the listener if the write failed first
            listener.join()


def _until_hung_up(
    connection: socket.socket, hung_up: threading.Event, changed: threading.Event
) -> None:
    """Return when the client closes its side (anything it sends meanwhile is dropped)."""
    try:
        while connection.recv(4096):
            pass
    except OSError as error:
        _log.debug("page event stream's connection failed: %s", error)
    finally:
        hung_up.set()
        changed.set()


def _shut(connection: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):  # already shut, or the client has gone
        connection.shutdown(how)


class WebServer(StopsOnExit):
    """Serves the page for ``board`` on ``host:port`` (port 0: a free one) from its own threads.

    ``url`` is known after ``start``; ``stop`` ends open event streams at once, gives responses
    being written a moment to finish, and closes the socket. Both are called from one thread.
    """

    def __init__(self, *, board: Board, host: str = "127.0.0.1", port: int = 0) -> None:
        self._board = board
        self._host = host
        self._port = port
        self._server: _PageServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the web server has not started: call start() first")
        return self._url

    def start(self) -> str:
        """Bind the socket, serve from a thread of its own, and return the page's URL."""
        try:
            server = _PageServer(self._board, self._host, self._port)
        except OSError as error:
            raise OSError(
                error.errno,
                f"cannot serve the page on {self._host}:{self._port} ({error.strerror}); "
                "choose another port with --web-port (0 picks a free one)",
            ) from None
        self._server = server
        self._thread = threading.Thread(target=_accept, args=(server,), name="page", daemon=True)
        self._thread.start()
        host, port = server.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}/"
        return self._url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None or self._thread is None:
            return
        server.stopping.set()
        # Reading ends at once: event streams (their listener sees the end of input) and clients
        # that have not sent their request yet.
        server.hang_up(socket.SHUT_RD)
        _wake(server)
        self._thread.join(_STOP_GRACE)
        if self._thread.is_alive():
            _log.warning("the page's server thread did not stop; leaving it (a daemon thread)")
        server.wait_closed(_STOP_GRACE)
        server.hang_up(socket.SHUT_RDWR)  # what is left is writing to a client that does not read
        server.server_close()  # closes the listening socket and joins the connections' threads


def _accept(server: _PageServer) -> None:
    """Accept connections until the server stops (the server's thread)."""
    # Not serve_forever(): it wakes up every poll_interval to look for a stop, and a lamp that
    # is still must cost no CPU. handle_request() blocks until a connection comes, and the
    # stop connects once (_wake) so the loop sees it.
    while not server.stopping.is_set():
        server.handle_request()


def _wake(server: _PageServer) -> None:
    host, port = server.socket.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104  not binding: the wildcard is not an address to call
        host = "::1" if ":" in host else "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=_STOP_GRACE):
            pass
    except OSError as error:
        _log.warning("could not wake the page's server thread to stop it: %s", error)
