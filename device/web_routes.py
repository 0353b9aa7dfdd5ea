"""The lamps' web pages and JSON API: each request to its answer (no sockets here).

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

The server that carries the answers to the browser, and the event streams, is device/web.py.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from io import BufferedIOBase
from typing import Any
from urllib.parse import unquote, urlsplit

from touchlamp.device.owner_auth import SESSION_SECONDS
from touchlamp.device.owner_page import OwnerAnswer, OwnerLamp, OwnerRequest
from touchlamp.device.web_board import Board, TouchRefusedError, UnknownLampError
from touchlamp.errors import TouchlampError

__all__ = [
    "SECURITY_HEADERS",
    "BadRequestError",
    "EventStream",
    "Request",
    "Response",
    "read_request",
    "route",
    "snapshot",
]

_STATIC_FILES = {
    "index.html": "text/html",
    "owner.html": "text/html",
    "owner.js": "text/javascript",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
_BODY_LIMIT = 64 * 1024  # the owner's API takes small JSON bodies; nothing needs more
_JSON = "application/json"
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
"""Sent with every response: no framing, no scripts from elsewhere, no sniffing."""


@dataclass(frozen=True, slots=True)
class Response:
    """What the server sends back (it adds the length, ``SECURITY_HEADERS`` and the close)."""

    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()


class EventStream:
    """The route's answer for ``/api/events``: the connection becomes a stream of snapshots."""


_STREAM = EventStream()


class BadRequestError(TouchlampError):
    """A request refused before any route sees it; ``response`` is the answer to send."""

    def __init__(self, status: HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.response = _text(status, text)


def _text(status: HTTPStatus, text: str) -> Response:
    return Response(status, text.encode())


def _json(document: object, status: HTTPStatus = HTTPStatus.OK) -> Response:
    return Response(status, json.dumps(document).encode(), _JSON)


def _segments(target: str) -> tuple[str, ...]:
    """The request target's path segments, each percent-decoded: "/" is ("",)."""
    path = urlsplit(target).path
    if not path.startswith("/"):
        raise BadRequestError(HTTPStatus.BAD_REQUEST, f"not a path: {target!r}")
    return tuple(unquote(segment) for segment in path[1:].split("/"))


def _read_body(headers: Message, body: BufferedIOBase) -> bytes:
    """The request's body (if any); refuse one that is chunked or too large."""
    if headers.get("Transfer-Encoding") is not None:
        raise BadRequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
    length_text = headers.get("Content-Length", "0").strip()
    if not (length_text.isascii() and length_text.isdigit()):
        raise BadRequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}")
    if int(length_text) > _BODY_LIMIT:
        raise BadRequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
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
        raise BadRequestError(
            HTTPStatus.FORBIDDEN,
            f"refused: a request from {origin} may not change this lamp "
            "(open the lamp's own page to change it)",
        )


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the routes read it: its path's segments, its body and its cookies."""

    method: str
    segments: tuple[str, ...]
    body: bytes
    cookies: Mapping[str, str]


def read_request(method: str, target: str, headers: Message, body: BufferedIOBase) -> Request:
    """The request ``http.server`` parsed the head of, with its body read.

    Raises ``BadRequestError`` (its ``response`` says why) for a target that is not a path, a
    body that is chunked or too large, and a POST from another origin.
    """
    segments = _segments(target)
    content = _read_body(headers, body)
    _check_origin(method, headers)
    return Request(method, segments, content, _cookies(headers))


def _cookies(headers: Message) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in headers.get_all("Cookie") or []:
        try:
            jar.load(header)
        except CookieError:
            continue  # a cookie another page set in a form we do not read
    return {name: morsel.value for name, morsel in jar.items()}


_Handler = Callable[["Board", Request], "Response | EventStream"]
_READ = ("GET", "HEAD")


def route(board: Board, request: Request) -> Response | EventStream:
    found = _find(request.segments)
    if found is None:
        return _text(HTTPStatus.NOT_FOUND, "no such page; the lamps' page is at /")
    methods, handler = found
    if request.method not in methods:
        return Response(
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
            return _READ, lambda board, _request: _json(snapshot(board))
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


def _home(board: Board) -> Response:
    home = board.home
    return _static_file("index.html") if home is None else _redirect(home)


def _redirect(location: str) -> Response:
    return Response(HTTPStatus.SEE_OTHER, headers=(("Location", location),))


def _owner_page(board: Board, lamp_id: str) -> Response:
    try:
        board.owner(lamp_id)
    except UnknownLampError:
        return _text(HTTPStatus.NOT_FOUND, f"no lamp {lamp_id!r} here; the lamps' page is at /")
    return _static_file("owner.html")


def _owner(board: Board, lamp_id: str, request: Request) -> Response:
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


def _owner_response(owner: OwnerLamp, answer: OwnerAnswer) -> Response:
    headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
    if answer.session is not None:
        lifetime = int(SESSION_SECONDS) if answer.session else 0
        cookie = f"{owner.cookie_name}={answer.session}; Path=/; Max-Age={lifetime}"
        headers.append(("Set-Cookie", f"{cookie}; HttpOnly; SameSite=Strict"))
    if answer.retry_after is not None:
        headers.append(("Retry-After", str(max(1, round(answer.retry_after)))))
    body = json.dumps(answer.document).encode()
    return Response(answer.status, body, _JSON, tuple(headers))


def _static_file(name: str) -> Response:
    content_type = _STATIC_FILES.get(name)
    if content_type is None:
        return _text(HTTPStatus.NOT_FOUND, f"no static file {name!r}")
    body = (importlib.resources.files("touchlamp.device") / "static" / name).read_bytes()
    return Response(HTTPStatus.OK, body, content_type)


def snapshot(board: Board) -> list[dict[str, object]]:
    return [view.to_json() for view in board.views()]


def _act(action: Callable[[str], None], lamp_id: str) -> Response:
    try:
        action(lamp_id)
    except UnknownLampError:
        error = f"no lamp {lamp_id!r}; GET /api/lamps lists them"
        return _json({"error": error}, HTTPStatus.NOT_FOUND)
    except TouchRefusedError as refused:
        return _json({"error": str(refused)}, HTTPStatus.FORBIDDEN)
    return _json({"ok": True})
