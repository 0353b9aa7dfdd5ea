"""A loopback TCP proxy that can break the connections through it the ways networks break.

``FaultProxy`` stands between one kind of client (a lamp, a relay) and the broker. It is the
tests' only TCP proxy: the link's tests use it as a cable to cut, the fault scenarios for the
rest. It can:

- ``pause()`` — hold every byte, in one or both directions, in the proxy: the connection stays
  open and nothing is lost, as on a congested link or a stalled Wi-Fi; ``resume()`` delivers
  what was held, in order;
- ``blackhole()`` — drop every byte silently, in existing *and* new connections (which are
  accepted and then never answered): the route is gone and neither side is told, so only
  keepalives notice; ``restore()`` ends it (connections that were black-holed stay useless, as
  they would on a real network: their byte streams have a hole in them);
- ``reset()`` — abort every connection with a TCP RST (``SO_LINGER`` 0), as a NAT box or a
  crashed access point does; ``cut()`` closes them with FIN;
- ``refuse()`` — reset new connections at once (the broker unreachable) until ``restore()``;
- ``discard_held()`` — throw away what ``pause()`` held, and whatever those connections send
  after it (the sender died before its bytes got out).

``watch`` hooks see every MQTT packet that passes (parsed by ``MqttSplitter``) *before* it is
forwarded, so a test can act at an exact point of the protocol — e.g. kill the broker the moment
its PUBACK for a touch leaves it, before the lamp has read it. A ``rewrite`` hook changes packets
on their way (a CONNECT with a property a misconfigured client would send).
"""

from __future__ import annotations

import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Direction",
    "FaultProxy",
    "MqttSplitter",
    "Packet",
    "PacketType",
    "Rewriter",
    "remaining_length",
]


def remaining_length(size: int) -> bytes:
    """MQTT's variable byte integer (a packet's remaining length, a properties length)."""
    encoded = bytearray()
    while True:
        size, digit = divmod(size, 128)
        encoded.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(encoded)


class Direction(enum.Enum):
    UP = "client→server"
    DOWN = "server→client"


class PacketType(enum.IntEnum):
    """MQTT control packet types (the high nibble of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


@dataclass(frozen=True, slots=True)
class Packet:
    """One MQTT packet as seen on the wire (MQTT 5 framing)."""

    kind: int
    flags: int
    body: bytes

    @property
    def wire(self) -> bytes:
        """The packet as it is sent."""
        return bytes([self.kind << 4 | self.flags]) + remaining_length(len(self.body)) + self.body

    @property
    def dup(self) -> bool:
        return self.kind == PacketType.PUBLISH and bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return self.kind == PacketType.PUBLISH and bool(self.flags & 0x01)

    @property
    def topic(self) -> str | None:
        if self.kind != PacketType.PUBLISH or len(self.body) < 2:
            return None
        (length,) = struct.unpack_from("!H", self.body)
        return self.body[2 : 2 + length].decode("utf-8", "replace")

    @property
    def packet_id(self) -> int | None:
        """The packet identifier of a QoS > 0 PUBLISH, or of a PUBACK."""
        if self.kind == PacketType.PUBACK and len(self.body) >= 2:
            return int(struct.unpack_from("!H", self.body)[0])
        if self.kind == PacketType.PUBLISH and (self.flags >> 1) & 0x03:
            (length,) = struct.unpack_from("!H", self.body)
            return int(struct.unpack_from("!H", self.body, 2 + length)[0])
        return None


class MqttSplitter:
    """Cuts a TCP byte stream into MQTT packets (the stream may split them anywhere)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer += data
        packets: list[Packet] = []
        while True:
            parsed = self._next()
            if parsed is None:
                return packets
            packets.append(parsed)

    def _next(self) -> Packet | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        length, multiplier, index = 0, 1, 1
        while True:
            if index >= len(buffer):
                return None
            byte = buffer[index]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
        if len(buffer) < index + length:
            return None
        packet = Packet(
            kind=buffer[0] >> 4, flags=buffer[0] & 0x0F, body=bytes(buffer[index : index + length])
        )
        del buffer[: index + length]
        return packet


Watcher = Callable[[Direction, Packet], None]
Rewriter = Callable[[Direction, Packet], bytes | None]


class _Link:
    """One client connection and its server-side twin."""

    def __init__(self, inside: socket.socket, outside: socket.socket) -> None:
        self.inside = inside
        self.outside = outside
        self.held: dict[Direction, list[bytes]] = {Direction.UP: [], Direction.DOWN: []}
        # One sender per direction at a time, so held bytes never overtake or trail new ones.
        self.sending = {Direction.UP: threading.Lock(), Direction.DOWN: threading.Lock()}
        self.blackholed = False

    def close(self, *, abort: bool) -> None:
        for sock in (self.inside, self.outside):
            with contextlib.suppress(OSError):
                if abort:
                    # Linger 0: close() sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """See the module docstring. ``close()`` at the end (the ``fault_proxy`` fixture does)."""

    def __init__(self, *, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Condition()
        self._links: list[_Link] = []
        self._paused: set[Direction] = set()
        self._blackhole = False
        self._refusing = False
        self._watchers: list[Watcher] = []
        self._rewriters: list[Rewriter] = []
        self.accepted = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # ---- faults (any thread) ----

    def pause(self, *directions: Direction) -> None:
        """Hold bytes in ``directions`` (both if none given) until ``resume``."""
        with self._lock:
            self._paused.update(directions or (Direction.UP, Direction.DOWN))

    def resume(self) -> None:
        """Deliver what was held, in order, and forward again."""
        with self._lock:
            self._paused.clear()
            links = list(self._links)
            self._lock.notify_all()
        for link in links:
            self._flush(link)

    def discard_held(self) -> None:
        """Throw away what ``pause`` held — and everything those connections send after it:
        TCP never delivers bytes past a hole, so their streams end here for the other side."""
        with self._lock:
            for link in self._links:
                if any(link.held.values()):
                    for held in link.held.values():
                        held.clear()
                    link.blackholed = True

    def blackhole(self) -> None:
        with self._lock:
            self._blackhole = True
            for link in self._links:
                link.blackholed = True

    def refuse(self) -> None:
        with self._lock:
            self._refusing = True

    def restore(self) -> None:
        """End ``blackhole`` and ``refuse`` for new connections (and ``pause``)."""
        with self._lock:
            self._blackhole = False
            self._refusing = False
        self.resume()

    def reset(self) -> None:
        """Abort every connection with RST."""
        self._close_links(abort=True)

    def cut(self) -> None:
        """Close every connection with FIN (an orderly close, without MQTT's DISCONNECT)."""
        self._close_links(abort=False)

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher`` with every packet, before it is forwarded (on the proxy's thread)."""
        with self._lock:
            self._watchers.append(watcher)

    def rewrite(self, rewriter: Rewriter) -> None:
        """Forward what ``rewriter`` returns for a packet instead of it (``None``: unchanged).

        Call it before clients connect: a rewritten stream is cut into whole packets from its
        first byte on."""
        with self._lock:
            self._rewriters.append(rewriter)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def wait_accepted(self, count: int, *, timeout: float) -> bool:
        """True once ``count`` connections have been accepted in all."""
        with self._lock:
            return self._lock.wait_for(lambda: self.accepted >= count, timeout=timeout)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        self._close_links(abort=False)
        self._thread.join(5.0)

    # ---- plumbing ----

    def _close_links(self, *, abort: bool) -> None:
        with self._lock:
            links, self._links = self._links, []
            self._lock.notify_all()
        for link in links:
            link.close(abort=abort)

    def _accept(self) -> None:
        while True:
            try:
                inside, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                _Link(inside, inside).close(abort=True)
                continue
            try:
                outside = socket.create_connection(self._target, timeout=5.0)
                outside.settimeout(None)
            except OSError:
                _Link(inside, inside).close(abort=True)  # as the broker's port would
                continue
            link = _Link(inside, outside)
            with self._lock:
                link.blackholed = self._blackhole
                self._links.append(link)
                self.accepted += 1
                self._lock.notify_all()
            for source, target, direction in (
                (inside, outside, Direction.UP),
                (outside, inside, Direction.DOWN),
            ):
                threading.Thread(
                    target=self._pump,
                    args=(link, source, target, direction),
                    name=f"fault-proxy-{direction.name.lower()}",
                    daemon=True,
                ).start()

    def _pump(
        self, link: _Link, source: socket.socket, target: socket.socket, direction: Direction
    ) -> None:
        splitter = MqttSplitter()
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    watchers = list(self._watchers)
                    rewriters = list(self._rewriters)
                if watchers or rewriters:
                    packets = splitter.feed(data)
                    for packet in packets:
                        for watcher in watchers:
                            watcher(direction, packet)
                    if rewriters:
                        data = b"".join(_rewritten(direction, p, rewriters) for p in packets)
                        if not data:
                            continue  # no whole packet yet
                with link.sending[direction]:
                    with self._lock:
                        if link.blackholed:
                            continue
                        if direction in self._paused:
                            link.held[direction].append(data)
                            continue
                        chunks, link.held[direction] = [*link.held[direction], data], []
                    for chunk in chunks:
                        target.sendall(chunk)
        # The source closed (or was closed): pass the close on, as TCP would.
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        link.close(abort=False)

    def _flush(self, link: _Link) -> None:
        for direction, target in ((Direction.UP, link.outside), (Direction.DOWN, link.inside)):
            with link.sending[direction]:
                with self._lock:
                    chunks, link.held[direction] = link.held[direction], []
                with contextlib.suppress(OSError):
                    for chunk in chunks:
                        target.sendall(chunk)


def _rewritten(direction: Direction, packet: Packet, rewriters: list[Rewriter]) -> bytes:
    for rewriter in rewriters:
        replaced = rewriter(direction, packet)
        if replaced is not None:
            return replaced
    return packet.wire
