"""The simulator's page, JSON API and event stream, over HTTP from a real client, over real lamps.

The lamps are the real agent on gpiozero's mock pins, each with its own MQTT connection to the
broker fixture; ``led`` in the API is read back from their PWM pins. The server runs in threads of
its own (``served_page``); these tests talk to it with the standard library's HTTP client and,
for what a well-behaved client never sends, a raw socket.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import urlsplit

import pytest

from tests.e2e.world import BrokerLike, World, same_hue, served_page
from tests.support.waiting import WAIT
from touchlamp.device.looks import Rgb
from touchlamp.device.sim import Simulator
from touchlamp.device.web import WebServer

AMBER = "#ff8c1a"
BLUE = "#3c78ff"

Lamps = list[dict[str, Any]]


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


@pytest.fixture
def simulator(world: World) -> Iterator[Simulator]:
    lamps = (
        world.lamp("lamp-a", color=AMBER, name="Kitchen"),
        world.lamp("lamp-b", color=BLUE, name="Grandma"),
    )
    with world.simulator(*lamps) as running:
        yield running


@pytest.fixture
def page(simulator: Simulator) -> Iterator[str]:
    with served_page(simulator) as url:
        yield url


class _Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def _request(url: str, method: str = "GET", *, body: bytes | None = None) -> _Answer:
    """One request on a connection of its own (errors are answers too, not exceptions)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        connection.request(method, parts.path, body=body)
        response = connection.getresponse()
        return _Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def _json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=WAIT) as response:  # noqa: S310  loopback
        return json.loads(response.read())


def _raw(url: str, data: bytes) -> bytes:
    """Send ``data`` as it is and return everything the server answers until it closes."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def _next_snapshot(stream: IO[bytes]) -> Lamps:
    """The next snapshot from an event stream (``data: [...]`` followed by a blank line)."""
    for line in stream:
        if line.startswith(b"data: "):
            snapshot: Lamps = json.loads(line[len(b"data: ") :])
            return snapshot
    raise AssertionError("the event stream ended")


def _until(stream: IO[bytes], check: Callable[[Lamps], bool]) -> Lamps:
    while True:
        snapshot = _next_snapshot(stream)
        if check(snapshot):
            return snapshot


def _lamp(snapshot: Lamps, lamp_id: str) -> dict[str, Any]:
    return next(lamp for lamp in snapshot if lamp["id"] == lamp_id)


def test_the_api_lists_each_lamp_with_its_pins(page: str) -> None:
    lamps = _json(page + "api/lamps")
    assert [(lamp["id"], lamp["name"], lamp["color"]) for lamp in lamps] == [
        ("lamp-a", "Kitchen", AMBER),
        ("lamp-b", "Grandma", BLUE),
    ]
    for lamp in lamps:
        assert set(lamp) == {"id", "name", "online", "led", "color", "gamma", "revision"}
        assert len(lamp["led"]) == 3
        assert all(0.0 <= value <= 1.0 for value in lamp["led"])


def test_the_event_stream_pushes_presence_and_a_press(page: str) -> None:
    """Both lamps come online; pressing lamp A lights A's own pins in its colour (the tap's
    feedback), pushed to the stream as it happens."""
    with urllib.request.urlopen(page + "api/events", timeout=WAIT) as stream:  # noqa: S310
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        _until(stream, lambda lamps: all(lamp["online"] for lamp in lamps))

        assert _request(page + "api/lamps/lamp-a/press", "POST").status == 200
        assert _request(page + "api/lamps/lamp-a/release", "POST").status == 200
        lit = _until(
            stream,
            lambda lamps: same_hue(Rgb(*_lamp(lamps, "lamp-a")["led"]), AMBER, gamma=2.2),
        )
        assert _lamp(lit, "lamp-a")["online"]


def test_pressing_an_unknown_lamp_says_which_lamps_exist(page: str) -> None:
    answer = _request(page + "api/lamps/lamp-z/press", "POST")
    assert answer.status == 404
    assert answer.headers["Content-Type"].startswith("application/json")
    error = json.loads(answer.body)["error"]
    assert "lamp-z" in error
    assert "/api/lamps" in error


def test_the_page_and_its_files_are_served(page: str) -> None:
    with urllib.request.urlopen(page, timeout=WAIT) as index:  # noqa: S310  loopback
        assert index.headers["Content-Type"].startswith("text/html")
        text = index.read().decode()
    assert "static/app.js" in text
    assert "static/style.css" in text
    with urllib.request.urlopen(page + "static/app.js", timeout=WAIT) as script:  # noqa: S310
        assert script.headers["Content-Type"].startswith("text/javascript")
        assert "api/events" in script.read().decode()
    assert _request(page + "static/secret.txt").status == 404
    assert _request(page + "static/../../pyproject.toml").status == 404


def test_head_answers_the_headers_of_get_without_the_body(page: str) -> None:
    whole = _request(page + "static/style.css")
    head = _raw(page, b"HEAD /static/style.css HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"\r\nContent-Length: {len(whole.body)}\r\n".encode() in head
    assert head.endswith(b"\r\n\r\n")
    assert len(whole.body) > 0


def test_a_wrong_method_or_path_is_refused_with_what_is_allowed(page: str) -> None:
    wrong_method = _request(page + "api/lamps/lamp-a/press")
    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "POST"
    assert _request(page + "api/lamps", "POST").headers["Allow"] == "GET, HEAD"
    assert _request(page + "api/nothing").status == 404
    # A method the server has no handler for at all is http.server's "not implemented".
    assert _request(page + "api/lamps", "DELETE").status == 501


def test_a_request_body_is_read_and_a_chunked_or_large_one_refused(page: str) -> None:
    with_body = _request(page + "api/lamps/lamp-a/release", "POST", body=b'{"ignored": true}')
    assert with_body.status == 200
    # Sent whole: a client still sending its body when the refusal comes gets a broken pipe.
    chunked = _raw(
        page,
        b"POST /api/lamps/lamp-a/release HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 411 ")
    too_large = _raw(
        page, b"POST /api/lamps/lamp-a/release HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"
    )
    assert too_large.startswith(b"HTTP/1.1 413 ")


def test_a_malformed_request_gets_an_error_and_the_server_keeps_serving(page: str) -> None:
    assert _raw(page, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _raw(page, b"GET / HTTP/1.x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _raw(page, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert _raw(page, b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _raw(page, b"GET / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n").startswith(
        b"HTTP/1.1 400 "
    )
    answer = _raw(page, b"GET /api/lamps HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])[0]["id"] == "lamp-a"


def test_the_request_head_is_bounded(page: str) -> None:
    """http.server's own limits: a request line or a header line of 64 KiB, 99 header lines
    (it counts the blank line that ends them as the hundredth)."""
    long_target = b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n"
    assert _raw(page, long_target).startswith(b"HTTP/1.1 414 ")
    long_line = b"GET / HTTP/1.1\r\nX-Pad: " + b"x" * 70_000 + b"\r\n\r\n"
    assert _raw(page, long_line).startswith(b"HTTP/1.1 431 ")
    many_lines = b"".join(b"X-Pad-%d: x\r\n" % number for number in range(100))
    assert _raw(page, b"GET / HTTP/1.1\r\n" + many_lines + b"\r\n").startswith(b"HTTP/1.1 431 ")
    within = b"".join(b"X-Pad-%d: x\r\n" % number for number in range(99))
    assert _raw(page, b"GET /api/lamps HTTP/1.1\r\n" + within + b"\r\n").startswith(
        b"HTTP/1.1 200 OK\r\n"
    )


def test_stopping_the_server_ends_an_open_event_stream(simulator: Simulator) -> None:
    with served_page(simulator) as url:
        stream = urllib.request.urlopen(url + "api/events", timeout=WAIT)  # noqa: S310
        assert stream.readline().startswith(b"data: [")
    with stream:
        # The stop ended the stream: what is left of it is read to its end (no hang).
        stream.read()


def test_stopping_the_server_ends_a_connection_that_never_sent_its_request(
    simulator: Simulator,
) -> None:
    with served_page(simulator) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        # Well within the 30 s the server waits for a request: it is the stop that ends it.
        silent = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
        # One thread accepts, in order: once a later request is answered, this one is open.
        assert _request(url + "api/lamps").status == 200
    with silent:
        assert silent.recv(4096) == b""


def test_the_server_can_be_stopped_before_and_after_serving(simulator: Simulator) -> None:
    server = WebServer(board=simulator)
    server.stop()  # never started: nothing to do
    with pytest.raises(RuntimeError, match="start"):
        _ = server.url
    url = server.start()
    assert server.url == url
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        _request(url + "api/lamps")
