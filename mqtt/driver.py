"""One paho client driven from the caller's thread: its network I/O, connecting and reconnecting.

paho's ``loop_start()`` runs a client in a thread of its own. Every ``publish()`` and ``ack()``
made from another thread then writes a byte to a socket pair to wake that thread, and the two
threads pass the GIL back and forth for each message; messages also cross between them through a
queue. For the relay that was about a sixth of its CPU per touch (issue 7). With this
driver the relay's worker owns the client: ``poll()`` waits for the socket, reads (paho's
callbacks run there, on the caller's thread), keeps the connection alive and writes; whatever
the caller publishes in between is queued by paho and leaves with the next ``flush()``. This is
paho's documented external-event-loop use (``loop_read``, ``loop_write``, ``loop_misc`` and
``on_socket_register_write``), as bench/swarm.py uses it for many clients.

``loop_forever`` would also connect and reconnect, so ``poll`` does: the first attempt at once,
then, after a failed attempt or a lost connection, the jittered delay of ``mqtt/backoff.py``
(drawn between ``min_delay`` and a ceiling that doubles up to ``max_delay``; paho's own policy
has no jitter, so after a broker restart every client would knock at the same instants), back to
the first delay once connected. Connecting blocks for at most paho's connect timeout.
``close()`` disconnects for good.

Not thread-safe: one thread calls everything, and the client's callbacks run on it. Other
threads may only publish through the client (paho's ``publish`` is thread-safe), and then,
with a ``wake`` (mqtt/wakeup.py), the owner's ``poll`` wakes to write it; ``poll`` also
returns when anyone calls ``wake.notify()``. ``reconnect=False``: a lost connection stays
lost (the lamp's link makes a new client for each connection, device/link.py).
"""

from __future__ import annotations

import logging
import random
import select
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from touchlamp.mqtt.backoff import Backoff
from touchlamp.mqtt.linger import lingering_close
from touchlamp.mqtt.wakeup import Wakeup

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

__all__ = ["MqttDriver"]

_log = logging.getLogger(__name__)

_CLOSE_SECONDS = 2.0  # for the DISCONNECT to leave, and the broker to hang up after it


class MqttDriver:
    """Runs ``client``'s network side on the caller's thread; see the module's doc.

    ``idle(seconds)`` is how the driver waits while there is no connection (an interruptible
    wait, e.g. ``threading.Event().wait``); ``clock`` is monotonic seconds; ``rng`` draws the
    reconnect jitter (seeded in tests).

    Thread: the caller's only; the client's callbacks run inside ``poll``.
    """

    def __init__(
        self,
        client: mqtt.Client,
        *,
        min_delay: float,
        max_delay: float,
        idle: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        wake: Wakeup | None = None,
        reconnect: bool = True,
    ) -> None:
        self._client = client
        self._backoff = Backoff(minimum=min_delay, maximum=max_delay, rng=rng or random.Random())
        self._idle = idle
        self._clock = clock
        self._due: float | None = None  # when to try connecting next
        self._closed = False
        self._reconnect = reconnect
        self._wake = wake
        self._owner = threading.get_ident()
        # Set, paho queues what ``publish()`` and ``ack()`` produce instead of writing it at
        # once: it leaves in ``flush()``, a whole batch of the caller's work at a time. A
        # publish from another thread (paho's publish is thread-safe) wakes the owner's
        # ``poll`` to write it, when the driver has a ``wake``.
        client.on_socket_register_write = _no_op if wake is None else self._wake_owner

    def connect_async(
        self,
        host: str,
        port: int,
        *,
        keepalive: int,
        clean_start: bool,
        properties: Properties | None = None,
    ) -> None:
        """Remember where to connect (as ``Client.connect_async``); ``poll`` connects."""
        self._client.connect_async(
            host, port, keepalive=keepalive, clean_start=clean_start, properties=properties
        )
        self._due = self._clock()

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the broker, then read what came (the client's
        callbacks run here), keep the connection alive and write what is queued. Without a
        connection: connect if it is time, else wait (at most ``timeout``)."""
        client = self._client
        sock = client.socket()
        if sock is None:
            if self._reconnect:
                self._connect_when_due(timeout)
            elif self._wake is not None:
                self._wake.wait(timeout)
            else:
                self._idle(timeout)
            return
        # TLS: bytes already decrypted and buffered are not seen by select.
        buffered = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        writing = [sock] if client.want_write() else []
        waiting: list[SocketLike | Wakeup] = [sock] if self._wake is None else [sock, self._wake]
        try:
            ready, _, _ = select.select(waiting, writing, [], 0.0 if buffered else timeout)
        except (OSError, ValueError):  # closed under us: paho notices on the next read
            ready = [sock]
        if sock in ready or buffered:
            client.loop_read()
        if client.socket() is not None and client.want_write():
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()
        self._note_state()

    def flush(self) -> None:
        """Write what paho has queued, as much as the socket takes now (the rest: ``poll``)."""
        if self._client.socket() is not None and self._client.want_write():
            self._client.loop_write()

    def close(self) -> None:
        """Disconnect (a DISCONNECT packet, so the broker keeps no will) and stop reconnecting."""
        self._closed = True
        client = self._client
        deadline = self._clock() + _CLOSE_SECONDS
        # Lingering: the acks written just before must reach the broker (mqtt/linger.py).
        with lingering_close(client, seconds=_CLOSE_SECONDS, clock=self._clock):
            client.disconnect()
            while (sock := client.socket()) is not None and client.want_write():
                client.loop_write()  # paho closes the socket once the DISCONNECT is out
                remaining = deadline - self._clock()
                if client.socket() is None or remaining <= 0:
                    break
                _wait_writable(sock, remaining)

    # -- connecting -------------------------------------------------------------------------------
    def _connect_when_due(self, timeout: float) -> None:
        if self._closed:
            self._idle(timeout)
            return
        now = self._clock()
        if self._due is None:  # the connection was just lost
            self._due = now + self._next_delay()
        if now < self._due:
            self._idle(min(timeout, self._due - now))
            return
        self._due = None
        try:
            self._client.reconnect()
        except OSError as error:
            delay = self._next_delay()
            self._due = self._clock() + delay
            _log.info("cannot reach the broker (%s); trying again in %.0f s", error, delay)
            return
        self.flush()  # the CONNECT

    def owned_here(self) -> bool:
        """Whether the caller is the owner's thread (the one that made the driver)."""
        return threading.get_ident() == self._owner

    def _wake_owner(self, _client: mqtt.Client, _userdata: object, _sock: SocketLike) -> None:
        if self._wake is not None and threading.get_ident() != self._owner:
            self._wake.notify()

    def _next_delay(self) -> float:
        return self._backoff.next_delay()

    def _note_state(self) -> None:
        if self._client.is_connected():
            self._backoff.reset()  # the next loss starts from the first delay again
        elif self._client.socket() is None and self._due is None:
            self._due = self._clock() + self._next_delay()


def _no_op(_client: mqtt.Client, _userdata: object, _sock: SocketLike) -> None:
    """paho's write-registration callback: nothing to register, ``flush`` writes."""


def _wait_writable(sock: SocketLike, seconds: float) -> None:
    try:
        select.select([], [sock], [], seconds)
    except (OSError, ValueError):
        return
