"""Many light MQTT clients on one thread: paho clients driven by a selector, not a thread each.

A thousand lamps as a thousand ``loop_start()`` threads would measure the GIL and the scheduler,
not the relay. paho supports an external event loop: it tells us when a socket opens, closes,
or has something to write (``on_socket_*`` callbacks), and we call ``loop_read`` /
``loop_write`` / ``loop_misc`` when the selector says so. Everything that touches a client —
connecting, publishing, the callbacks — runs on the swarm's one thread; other threads hand it
work with ``call_soon`` or ``run`` (which waits for the result).

Times are ``time.monotonic()``: on Linux that is ``CLOCK_MONOTONIC``, one clock for every process
on the machine, so a time taken here compares with one taken in the relay or a peer process.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

__all__ = ["Swarm", "SwarmClient", "SwarmError"]

_MISC_EVERY = 1.0  # keep-alive bookkeeping for every client, once a second
_Result = TypeVar("_Result")
Handler = Callable[[str, bytes, float], None]
"""``(topic, payload, received_at)``, called on the swarm's thread for every message."""


class SwarmError(RuntimeError):
    """A swarm client could not connect or subscribe; the message names it and the reason."""


@dataclass(slots=True)
class SwarmClient:
    """One MQTT connection of the swarm (a lamp, or the relay login) and what it has seen."""

    name: str
    client: mqtt.Client
    on_message: Handler | None = None
    connack: ReasonCode | None = None
    subscribed: list[int] = field(default_factory=list)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    disconnected: ReasonCode | None = None
    published: int = 0
    acked: int = 0


class Swarm:
    """A selector loop for many paho clients; ``start()``, add clients, ``stop()``."""

    def __init__(self, *, host: str, port: int, name: str = "swarm") -> None:
        self._host = host
        self._port = port
        self._name = name
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)  # noqa: FBT003  socket's own API
        self._wake_write.setblocking(False)  # noqa: FBT003  socket's own API
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._clients: list[SwarmClient] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._failure: BaseException | None = None

    # -- any thread ---------------------------------------------------------------------------

    @property
    def clients(self) -> list[SwarmClient]:
        return list(self._clients)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Disconnect every client and end the loop (idempotent)."""
        if self._thread is None:
            return
        self.call_soon(self._disconnect_all)
        deadline = time.monotonic() + 5.0
        self.call_soon(lambda: self._stop_when_idle(deadline))
        self._thread.join(10.0)
        self._thread = None
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the swarm's thread. Called from any thread."""
        self._calls.put(call)
        # A full pipe means the loop is awake anyway.
        with contextlib.suppress(BlockingIOError):
            self._wake_write.send(b"\0")

    def run(self, call: Callable[[], _Result], *, timeout: float = 30.0) -> _Result:
        """Run ``call`` on the swarm's thread and return its result (or raise its error)."""
        done = threading.Event()
        box: list[_Result] = []
        errors: list[BaseException] = []

        def wrapped() -> None:
            try:
                box.append(call())
            except BaseException as error:  # noqa: BLE001  handed to the caller, re-raised there
                errors.append(error)
            finally:
                done.set()

        self.call_soon(wrapped)
        if not done.wait(timeout):
            raise SwarmError(f"{self._name}: a call did not finish within {timeout:g} s")
        if errors:
            raise errors[0]
        return box[0]

    def wait_for(self, predicate: Callable[[], bool], *, what: str, timeout: float) -> None:
        """Wait until ``predicate()`` (checked after every loop iteration) holds."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: predicate() or self._failure is not None, timeout=timeout
            ):
                raise SwarmError(f"{self._name}: not within {timeout:g} s: {what}")
        if self._failure is not None:
            raise SwarmError(f"{self._name}: the loop failed: {self._failure!r}")

    def connect_all(
        self,
        logins: list[tuple[str, str, str]],
        *,
        subscribe: Callable[[str], list[str]] | None = None,
        on_message: Callable[[str], Handler | None] | None = None,
        max_inflight: int = 20,
        session_expiry: int = 0,
        timeout: float = 120.0,
    ) -> list[SwarmClient]:
        """Connect ``(username, password, client_id)`` logins and subscribe each (QoS 1).

        ``subscribe(username)`` names each client's topic filters; ``on_message(username)`` its
        message handler. ``session_expiry`` > 0 asks for a persistent session, as a real lamp
        does (the broker then persists what it queues for it). Returns once every client has
        its CONNACK and SUBACK.
        """
        made: list[SwarmClient] = []
        for start in range(0, len(logins), 50):
            # A few dozen at a time: the broker's listen backlog and the loop stay responsive.
            chunk = logins[start : start + 50]
            made.extend(
                self.run(
                    lambda chunk=chunk: [  # type: ignore[misc]
                        self._connect(
                            username,
                            password,
                            client_id,
                            handler=on_message(username) if on_message else None,
                            max_inflight=max_inflight,
                            session_expiry=session_expiry,
                        )
                        for username, password, client_id in chunk
                    ]
                )
            )
        self.wait_for(
            lambda: all(c.connack is not None for c in made),
            what=f"CONNACK for {len(made)} clients",
            timeout=timeout,
        )
        refused = [c for c in made if c.connack is not None and c.connack.is_failure]
        if refused:
            raise SwarmError(
                f"{len(refused)} of {len(made)} clients were refused, e.g. {refused[0].name}: "
                f"{refused[0].connack}"
            )
        if subscribe is not None:
            self.run(lambda: self._subscribe_all(made, subscribe))
            self.wait_for(
                lambda: all(all(mid in c.subacks for mid in c.subscribed) for c in made),
                what=f"SUBACK for {len(made)} clients",
                timeout=timeout,
            )
            for made_client in made:
                for codes in made_client.subacks.values():
                    if any(code.is_failure for code in codes):
                        raise SwarmError(
                            f"the broker refused {made_client.name}'s subscription: {codes}"
                        )
        return made

    # -- the swarm's thread -------------------------------------------------------------------

    def call_at(self, due: float, call: Callable[[], None]) -> None:
        """Run ``call`` at monotonic time ``due``. Only from the swarm's thread."""
        heapq.heappush(self._timers, (due, next(self._order), call))

    def publish(self, member: SwarmClient, topic: str, payload: bytes) -> None:
        """QoS 1, not retained. Only from the swarm's thread."""
        info = member.client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise SwarmError(f"{member.name}: publish to {topic} failed ({info.rc})")
        member.published += 1

    def _connect(
        self,
        username: str,
        password: str,
        client_id: str,
        *,
        handler: Handler | None,
        max_inflight: int,
        session_expiry: int,
    ) -> SwarmClient:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(username, password)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)  # unbounded: the benchmark decides how much it sends
        member = SwarmClient(name=username, client=client, on_message=handler)
        self._wire(member)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if session_expiry:
            properties.SessionExpiryInterval = session_expiry
        client.connect(
            self._host,
            self._port,
            keepalive=60,
            clean_start=not session_expiry,
            properties=properties,
        )
        self._clients.append(member)
        return member

    def _subscribe_all(
        self, members: list[SwarmClient], topics: Callable[[str], list[str]]
    ) -> None:
        for member in members:
            self._subscribe(member, topics(member.name))

    def _subscribe(self, member: SwarmClient, topics: list[str]) -> None:
        if not topics:
            return
        result, mid = member.client.subscribe([(topic, 1) for topic in topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise SwarmError(f"{member.name}: subscribe failed ({result})")
        member.subscribed.append(mid)

    def _wire(self, member: SwarmClient) -> None:
        selector = self._selector

        def opened(_c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            selector.register(sock, selectors.EVENT_READ, member)

        def closed(_c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            with contextlib.suppress(KeyError, ValueError):  # never registered, or closed
                selector.unregister(sock)

        def want_write(_c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            with contextlib.suppress(KeyError, ValueError):  # closed meanwhile
                selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, member)

        def written(_c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            with contextlib.suppress(KeyError, ValueError):
                selector.modify(sock, selectors.EVENT_READ, member)

        def connected(
            _c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, reason: ReasonCode, _p: object
        ) -> None:
            member.connack = reason

        def subscribed(
            _c: mqtt.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: object
        ) -> None:
            member.subacks[mid] = list(reasons)

        def published(_c: mqtt.Client, _u: object, _m: int, _r: ReasonCode, _p: object) -> None:
            member.acked += 1

        def disconnected(
            _c: mqtt.Client, _u: object, _f: mqtt.DisconnectFlags, reason: ReasonCode, _p: object
        ) -> None:
            member.disconnected = reason

        def message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            if member.on_message is not None:
                member.on_message(msg.topic, bytes(msg.payload), time.monotonic())

        client = member.client
        client.on_socket_open = opened
        client.on_socket_close = closed
        client.on_socket_register_write = want_write
        client.on_socket_unregister_write = written
        client.on_connect = connected
        client.on_subscribe = subscribed
        client.on_publish = published
        client.on_disconnect = disconnected
        client.on_message = message

    def _run(self) -> None:
        next_misc = time.monotonic() + _MISC_EVERY
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                due = min(next_misc, self._timers[0][0]) if self._timers else next_misc
                for key, mask in self._selector.select(max(0.0, due - now)):
                    member = key.data
                    if member is None:
                        self._drain_wake()
                        continue
                    assert isinstance(member, SwarmClient)
                    if mask & selectors.EVENT_READ:
                        # paho reads one packet per call here whatever max_packets says; the
                        # selector reports the socket again while more is waiting.
                        member.client.loop_read()
                    if mask & selectors.EVENT_WRITE:
                        member.client.loop_write()
                self._run_calls()
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, call = heapq.heappop(self._timers)
                    call()
                if now >= next_misc:
                    next_misc = now + _MISC_EVERY
                    for member in self._clients:
                        member.client.loop_misc()
                with self._changed:
                    self._changed.notify_all()
        except BaseException as error:
            self._failure = error
            with self._changed:
                self._changed.notify_all()
            raise

    def _run_calls(self) -> None:
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            call()

    def _drain_wake(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _disconnect_all(self) -> None:
        for member in self._clients:
            if member.client.is_connected():
                member.client.disconnect()

    def _stop_when_idle(self, deadline: float) -> None:
        # Let the DISCONNECT packets go out before the loop ends.
        if any(m.client.want_write() for m in self._clients) and time.monotonic() < deadline:
            self.call_at(time.monotonic() + 0.01, lambda: self._stop_when_idle(deadline))
            return
        self._stopping.set()
