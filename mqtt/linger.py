"""Closing an MQTT connection so that the broker reads everything written before the close.

paho closes its socket as soon as the DISCONNECT packet is written. If bytes the broker sent
meanwhile are still unread in that socket (messages keep coming until the broker sees the
DISCONNECT), the kernel answers the close with a reset (RST) instead of a FIN — TCP's rule for
a close that discards unread data (RFC 2525, 2.17) — and a broker that had not yet read all the
client wrote drops the rest: the client's last PUBACKs and its DISCONNECT. It then redelivers
messages the client had acknowledged (a relay stopped mid-stream forwarded a touch twice after
its restart, tests/relay) and, without the DISCONNECT, publishes the client's will.

``lingering_close`` keeps a second handle on the connection while paho disconnects and closes
its own; once the DISCONNECT is out it half-closes (FIN) and reads and discards whatever comes
until the broker hangs up, which it does after reading the DISCONNECT — so the last packets are
read before the connection ends (the "lingering close" of HTTP servers). Bounded by ``seconds``:
a broker that never hangs up gets the reset after all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt

__all__ = ["lingering_close"]

_log = logging.getLogger(__name__)

_READ_BYTES = 65_536


@contextlib.contextmanager
def lingering_close(
    client: mqtt.Client, *, seconds: float, clock: Callable[[], float] = time.monotonic
) -> Iterator[None]:
    """Around the code that disconnects ``client`` (``disconnect()`` and whatever writes it
    out): afterwards, if paho closed its socket, drain the connection until the broker hangs
    up, for at most ``seconds`` from entering. A client without a connection: nothing to do."""
    deadline = clock() + seconds
    handle = _second_handle(client)
    try:
        yield
    finally:
        if handle is not None:
            with handle:
                if client.socket() is None:  # paho wrote the DISCONNECT and closed its socket
                    _drain(handle, deadline, clock)


def _second_handle(client: mqtt.Client) -> socket.socket | None:
    """A socket object of its own on ``client``'s connection (a TLS one too: the raw TCP
    connection underneath, whose bytes are only discarded)."""
    sock = client.socket()
    if sock is None:
        return None
    try:
        return socket.socket(fileno=os.dup(sock.fileno()))
    except (OSError, AttributeError, ValueError) as error:  # e.g. a socket closed under us
        _log.debug("no lingering close: %s", error)
        return None


def _drain(handle: socket.socket, deadline: float, clock: Callable[[], float]) -> None:
    try:
        handle.shutdown(socket.SHUT_WR)  # our FIN, after the DISCONNECT
        while (left := deadline - clock()) > 0:
            if not select.select([handle], [], [], left)[0]:
                break
            if not handle.recv(_READ_BYTES):
                return  # the broker hung up: it has read everything
    except OSError as error:  # reset or gone: nothing more to read
        _log.debug("lingering close ended: %s", error)
        return
    _log.debug("the broker did not hang up within the lingering close; closing anyway")
