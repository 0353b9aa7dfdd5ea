"""An MQTT 5 client spoken byte by byte, for what paho will not do: set the DUP flag on a first
send (paho sets it only on its own retries), publish a retained touch as a misconfigured client
would. QoS 1 only; every call waits for the broker's answer."""

from __future__ import annotations

import socket
import struct

from tests.faults.lamps import WAIT
from tests.faults.proxy import MqttSplitter, Packet, PacketType

__all__ = ["RawClient"]


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


class RawClient:
    """Connects at construction (clean start, no session); ``close()`` sends DISCONNECT."""

    def __init__(self, *, port: int, username: str, password: str, client_id: str) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self._splitter = MqttSplitter()
        self._pending: list[Packet] = []
        self._next_id = 1
        flags = 0x80 | 0x40 | 0x02  # user name, password, clean start
        body = (
            _string("MQTT") + bytes([5, flags]) + struct.pack("!H", 30) + b"\x00"
            + _string(client_id) + _string(username) + _string(password)
        )  # fmt: skip
        self._send(0x10, body)
        connack = self._read(PacketType.CONNACK)
        if connack.body[1] != 0:
            raise AssertionError(f"the broker refused {username}: reason {connack.body[1]:#x}")

    def publish(
        self, topic: str, payload: bytes, *, dup: bool = False, retain: bool = False
    ) -> int:
        """Publish at QoS 1; the PUBACK's reason code (0 success, 0x10 no subscribers, …)."""
        packet_id, self._next_id = self._next_id, self._next_id + 1
        flags = 0x02 | (0x08 if dup else 0) | (0x01 if retain else 0)
        variable = _string(topic) + struct.pack("!H", packet_id) + b"\x00"  # no properties
        self._send(0x30 | flags, variable + payload)
        while True:
            puback = self._read(PacketType.PUBACK)
            if puback.packet_id == packet_id:
                return puback.body[2] if len(puback.body) > 2 else 0

    def close(self) -> None:
        try:
            self._send(0xE0, b"\x00")
        finally:
            self._sock.close()

    def _send(self, first: int, body: bytes) -> None:
        length, encoded = len(body), bytearray()
        while True:
            byte, length = length % 128, length // 128
            encoded.append(byte | (0x80 if length else 0))
            if not length:
                break
        self._sock.sendall(bytes([first]) + bytes(encoded) + body)

    def _read(self, kind: PacketType) -> Packet:
        while True:
            for index, packet in enumerate(self._pending):
                if packet.kind == kind:
                    return self._pending.pop(index)
            data = self._sock.recv(65536)
            if not data:
                raise AssertionError("the broker closed the raw client's connection")
            self._pending += self._splitter.feed(data)
