"""The lamps' web page served: an HTTP server on its own threads, and its event streams.

What each request gets is device/web_routes.py's (the routes, the JSON API, the owner's
requests), what the lamps behind the page are is device/web_board.py's (``Board``).

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
left to us is the routes, the event streams and a stop that does not wait for the page to close.

Its limits, which suit a page on 127.0.0.1 and would not suit a public server: a thread per
connection (two for an event stream: one writes, one notices the page hanging up), one request
per connection (every response says ``Connection: close``), request bodies only with a
``Content-Length`` of at most 64 KiB (JSON for the owner's API), and a request head bounded
by ``http.server``'s own limits (a request line of 64 KiB, 99 header lines of 64 KiB each)
with each read of it waiting at most ``_HEAD_TIMEOUT`` seconds, not a deadline for the whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from touchlamp.device.web_board import Board
from touchlamp.device.web_routes import (
    SECURITY_HEADERS,
    BadRequestError,
    EventStream,
    Response,
    read_request,
    route,
    snapshot,
)
from touchlamp.lifecycle import StopsOnExit

__all__ = ["WebServer"]

_log = logging.getLogger(__name__)

_HEAD_TIMEOUT = 30.0  # seconds each read of a request may wait, so a silent client goes away
_STOP_GRACE = 2.0  # seconds responses being written get to finish when the server stops


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
            request = read_request(self.command, self.path, self.headers, self.rfile)
        except BadRequestError as bad:
            self._send(bad.response)
            return
        answer = route(self.server.board, request)
        if isinstance(answer, EventStream):
            self._stream()
        else:
            self._send(answer)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", f"{response.content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in (*response.headers, *SECURITY_HEADERS):
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
                payload = json.dumps(snapshot(self.server.board), separators=(",", ":"))
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
    def host(self) -> str:
        """The address the page is served on, as given (``0.0.0.0``: every address)."""
        return self._host

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
