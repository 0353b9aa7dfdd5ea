"""MQTT 3.1.1 packets written by hand, as an attacker with a plain socket would send them.

paho refuses to build some of these (a packet larger than the broker announced, a client id with
control characters), so the tests that need them speak the wire format directly.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from types import TracebackType
from typing import Self

__all__ = ["RawClient", "connect_packet", "publish_packet", "remaining_length"]

_CONNECT, _PUBLISH = 0x10, 0x30
_CLEAN_SESSION, _PASSWORD, _USERNAME = 0x02, 0x40, 0x80


def remaining_length(size: int) -> bytes:
    """MQTT's variable byte integer."""
    encoded = bytearray()
    while True:
        size, digit = divmod(size, 128)
        encoded.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(encoded)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def connect_packet(*, client_id: bytes, username: bytes | None, password: bytes | None) -> bytes:
    flags = _CLEAN_SESSION
    payload = _string(client_id)
    if username is not None:
        flags |= _USERNAME
        payload += _string(username)
    if password is not None:
        flags |= _PASSWORD
        payload += _string(password)
    variable = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30)
    body = variable + payload
    return bytes([_CONNECT]) + remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH."""
    body = _string(topic.encode()) + payload
    return bytes([_PUBLISH]) + remaining_length(len(body)) + body


class RawClient:
    """A TCP connection to the broker that sends bytes and reports whether it was closed."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)

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
        """The CONNACK's return code (0 accepted, 4 bad credentials, 5 not authorised)."""
        answer = self._socket.recv(4)
        assert answer[:2] == b"\x20\x02", f"not a CONNACK: {answer!r}"
        return answer[3]

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
