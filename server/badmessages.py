"""Logging bad messages safely: a bounded, escaped excerpt, at most once per lamp per interval.

A lamp (or whoever holds its credentials) can send anything. The relay must still say what it
dropped, but a payload must never write terminal escape sequences or megabytes into the log,
and a lamp sending garbage a thousand times a second must not produce a thousand log lines.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable

from touchlamp.server.inbound import Inbound
from touchlamp.server.metrics import RelayMetrics

__all__ = ["BadMessages", "LogThrottle", "safe_excerpt"]

_log = logging.getLogger(__name__)


def safe_excerpt(payload: bytes, *, limit: int = 80) -> str:
    """At most ``limit`` printable characters of ``payload``; control and format characters
    (ESC, CR, bidi overrides…) and invalid UTF-8 shown as escapes; the total size if cut."""
    text = payload[: limit * 4].decode("utf-8", errors="backslashreplace")
    shown = []
    for char in text:
        if unicodedata.category(char)[0] in {"C", "Z"} and char != " ":
            shown.append(char.encode("unicode_escape").decode("ascii"))
        else:
            shown.append(char)
    excerpt = "".join(shown)
    if len(excerpt) > limit or len(payload) > limit * 4:
        return f"{excerpt[:limit]}… ({len(payload)} bytes)"
    return excerpt


class LogThrottle:
    """``should_log(key)`` is True at most once per ``interval`` seconds for each key.

    Remembers only keys seen within the last interval, so memory stays bounded by how many
    distinct keys (lamps) misbehave at once. ``clock`` is monotonic seconds.
    """

    def __init__(self, *, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def should_log(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) > 1000:
            self._forget_older_than(now - self._interval)
        self._last[key] = now
        return True

    def take_suppressed(self, key: str) -> int:
        """How many were not logged for ``key`` since its last log line (and reset to 0)."""
        return self._suppressed.pop(key, 0)

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [key for key, when in self._last.items() if when < cutoff]:
            del self._last[key]
            self._suppressed.pop(key, None)


class BadMessages:
    """Counting and logging the messages the relay drops as bad: by kind in
    ``bad_messages_total``, and one throttled log line per key (a lamp, a topic)."""

    def __init__(self, *, metrics: RelayMetrics, throttle: LogThrottle) -> None:
        self._metrics = metrics
        self._throttle = throttle

    def reject(self, kind: str, item: Inbound, reason: str) -> None:
        """Count ``item`` as a bad message of ``kind`` and log it (throttled per topic)."""
        self._metrics.bad_messages.labels(kind=kind).inc()
        self.log(item.topic or "?", item, reason)

    def log(self, key: str, item: Inbound, reason: str) -> None:
        """Log ``item`` as dropped, unless ``key`` was logged within the throttle's interval."""
        if not self._throttle.should_log(key):
            return
        suppressed = self._throttle.take_suppressed(key)
        more = f" (+{suppressed} similar not logged)" if suppressed else ""
        _log.warning(
            "dropped a bad message on %s: %s; payload %s%s",
            safe_excerpt(item.topic.encode(), limit=120),
            reason,
            safe_excerpt(item.payload),
            more,
        )
