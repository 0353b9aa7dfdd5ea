"""An MQTT client spoken byte by byte, for what paho will not do.

Two kinds of test need it: the security tests send what an attacker with a plain socket would
(a packet larger than the broker announced, a client id with control characters: MQTT 3.1.1
packets built by ``connect_packet``/``publish_packet``, sent with ``send``), and the fault
scenarios act as a misconfigured or replaying client (an MQTT 5 session from ``RawClient.mqtt5``
whose ``publish`` sets the DUP flag on a first send, which paho sets only on its own retries, or
publishes a retained touch; QoS 1 only, every call waits for the broker's answer).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from types import TracebackType
from typing import Self

from tests.support.proxy import MqttSplitter, Packet, PacketType, remaining_length
from tests.support.waiting import WAIT

__all__ = ["RawClient", "connect_packet", "publish_packet", "remaining_length"]

_CONNECT, _PUBLISH, _DISCONNECT = 0x10, 0x30, 0xE0
_CLEAN_SESSION, _PASSWORD, _USERNAME = 0x02, 0x40, 0x80
_QOS_1, _DUP, _RETAIN = 0x02, 0x08, 0x01


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def connect_packet(*, client_id: bytes, username: bytes | None, password: bytes | None) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session."""
    flags = _CLEAN_SESSION
    payload = _string(client_id)
    if username is not None:
        flags |= _USERNAME
        payload += _string(username)
    if password is not None:
        flags |= _PASSWORD
        payload += _string(password)
    variable = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30)
    return _packet(_CONNECT, variable + payload)


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0."""
    return _packet(_PUBLISH, _string(topic) + payload)


class RawClient:
    """A TCP connection to the broker that sends bytes and reports whether it was closed."""

    def __init__(self, host: str, port: int, *, timeout: float = WAIT) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._splitter = MqttSplitter()
        self._pending: list[Packet] = []
        self._next_id = 1
        self._in_session = False

    @classmethod
    def mqtt5(
        cls, *, port: int, username: str, password: str, client_id: str, host: str = "127.0.0.1"
    ) -> RawClient:
        """Connected with MQTT 5 (clean start, no session); ``close()`` then sends DISCONNECT."""
        client = cls(host, port)
        flags = _USERNAME | _PASSWORD | _CLEAN_SESSION
        body = (
            _string("MQTT") + bytes([5, flags]) + struct.pack("!H", 30) + b"\x00"
            + _string(client_id) + _string(username) + _string(password)
        )  # fmt: skip
        client.socket.sendall(_packet(_CONNECT, body))
        connack = client.read(PacketType.CONNACK)
        if connack.body[1] != 0:
            client.socket.close()
            raise AssertionError(f"the broker refused {username}: reason {connack.body[1]:#x}")
        client._in_session = True
        return client

    @property
    def socket(self) -> socket.socket:
        """The connection itself (to start TLS on it, say)."""
        return self._socket

    def send(self, data: bytes) -> None:
        # The broker may close the connection half-way through a large packet: that is the
        # outcome under test, which closed() reports.
        with contextlib.suppress(OSError):
            self._socket.sendall(data)

    def connack(self) -> int:
        """An MQTT 3.1.1 CONNACK's return code (0 accepted, 4 bad credentials, 5 not authorised)."""
        answer = self._socket.recv(4)
        assert answer[:2] == b"\x20\x02", f"not a CONNACK: {answer!r}"
        return answer[3]

    def publish(
        self, topic: str, payload: bytes, *, dup: bool = False, retain: bool = False
    ) -> int:
        """Publish at QoS 1 (MQTT 5); the PUBACK's reason code (0 success, 0x10 no subscribers…)."""
        packet_id, self._next_id = self._next_id, self._next_id + 1
        flags = _QOS_1 | (_DUP if dup else 0) | (_RETAIN if retain else 0)
        variable = _string(topic) + struct.pack("!H", packet_id) + b"\x00"  # no properties
        self._socket.sendall(_packet(_PUBLISH | flags, variable + payload))
        while True:
            puback = self.read(PacketType.PUBACK)
            if puback.packet_id == packet_id:
                return puback.body[2] if len(puback.body) > 2 else 0

    def read(self, kind: PacketType) -> Packet:
        """The next packet of ``kind`` from the broker (others are kept for a later read)."""
        while True:
            for index, packet in enumerate(self._pending):
                if packet.kind == kind:
                    return self._pending.pop(index)
            data = self._socket.recv(65536)
            if not data:
                raise AssertionError("the broker closed the raw client's connection")
            self._pending += self._splitter.feed(data)

    def closed(self) -> bool:
        """Whether the broker closed the connection (waits up to the timeout for it)."""
        try:
            while self._socket.recv(1024):
                pass  # anything the broker says before closing (MQTT 3.1.1: nothing)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Send DISCONNECT if ``mqtt5`` connected this client, then close the connection."""
        try:
            if self._in_session:
                self._socket.sendall(_packet(_DISCONNECT, b"\x00"))
        finally:
            self._socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
