"""The one error the wire raises."""

from __future__ import annotations

from touchlamp.errors import TouchlampError

__all__ = ["ProtocolError"]


class ProtocolError(TouchlampError, ValueError):
    """A topic or payload that does not follow wire protocol v1 (PROTOCOL.md).

    ``topic`` is where it arrived (or the text that was not a valid topic / lamp id) and
    ``reason`` says what is wrong, so a log line can name both without re-parsing the message.
    """

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"{topic}: {reason}")
        self.topic = topic
        self.reason = reason
