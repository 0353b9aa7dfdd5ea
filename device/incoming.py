"""What reaches the lamp over MQTT, turned into the lamp's events (device/events.py).

A glow becomes a ``GlowReceived`` once (the seen ids, device/dedup.py, drop a repeat), aged by
its Message Expiry Interval (``_waited``); its id is recorded as seen only when the link's owner
says what it was handed is shown (``kept``), so that a lamp dying before the glow lit up shows
it after its restart (RELIABILITY.md, change 16). A group state becomes a ``GroupChanged``; a
pairing answer goes to the ``request`` waiting for its correlation data. Anything off-protocol is
dropped with a log line that quotes the payload inertly (``repr`` of the bytes, ASCII only).

Runs on the thread that serves the link (device/link.py), after paho's callback noted the
message; the link acknowledges a glow only once it is kept (device/link_client.py,
"acknowledged once kept").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from touchlamp.device.dedup import SeenTouches
from touchlamp.device.events import Event, GlowReceived, GroupChanged
from touchlamp.device.glow_expiry import load_glow_expiry, save_glow_expiry
from touchlamp.device.outbox import StateFileError
from touchlamp.device.state_trouble import StateFileWatch
from touchlamp.protocol import (
    Kind,
    PairResponse,
    ProtocolError,
    Topics,
    decode_glow,
    decode_group,
    decode_pair_response,
)

__all__ = ["IncomingMessages", "Waiter"]

logger = logging.getLogger(__name__)

_EXCERPT_BYTES = 80
# The seen-glow ids are checkpointed (device/dedup.py) once glows pause this long, so not in
# front of the next glow of a run of them; or after this many, as SQLite would (~1000 pages).
_SEEN_CHECKPOINT_QUIET_SECONDS = 1.0
_SEEN_CHECKPOINT_IDS = 300


@dataclass(slots=True)
class Waiter:
    """One ``request`` waiting for the response with its correlation data."""

    done: threading.Event = field(default_factory=threading.Event)
    response: PairResponse | None = None


class IncomingMessages:
    """The messages of lamp ``lamp_id``, decoded into events handed to ``emit``.

    ``lock`` is the link's: it guards the waiters, as it guards the rest of the link's shared
    state. ``trouble`` hears whether the seen-glow file takes writes.
    """

    def __init__(
        self,
        *,
        lamp_id: str,
        topics: Topics,
        state_dir: Path,
        seen_capacity: int,
        lock: threading.Lock,
        emit: Callable[[Event], None],
        trouble: StateFileWatch,
    ) -> None:
        self._lamp_id = lamp_id
        self._topics = topics
        self._seen = SeenTouches(state_dir=state_dir, capacity=seen_capacity)
        self._lock = lock
        self._emit = emit
        self._trouble = trouble
        self._waiters: dict[bytes, Waiter] = {}  # guarded by ``lock``
        self._unkept: list[str] = []  # ids of glows handed on, not yet shown (``kept``)
        self._checkpoint_at: float | None = None
        self._state_dir = state_dir
        self._glow_expiry = load_glow_expiry(state_dir)  # the relay's, as learnt (_waited)

    @property
    def checkpoint_at(self) -> float | None:
        """When (monotonic) the seen glows are due to be checkpointed, if they are."""
        return self._checkpoint_at

    def expect(self, correlation: bytes) -> Waiter:
        """A waiter for the pairing answer carrying ``correlation`` (any thread)."""
        waiter = Waiter()
        with self._lock:
            self._waiters[correlation] = waiter
        return waiter

    def forget(self, correlation: bytes) -> None:
        """Stop waiting for ``correlation`` (any thread); a late answer is then only logged."""
        with self._lock:
            self._waiters.pop(correlation, None)

    def handle(
        self, topic: str, payload: bytes, correlation: bytes | None, expiry: object = None
    ) -> None:
        """Emit the event of one message; a message off-protocol is logged and dropped."""
        try:
            self._dispatch(topic, payload, correlation, expiry)
        except ProtocolError as error:
            logger.warning(
                "lamp %s dropped a bad message on %s: %s (payload %r)",
                self._lamp_id,
                topic[:200],
                error.reason,
                payload[:_EXCERPT_BYTES],
            )

    def checkpoint_if_due(self, now: float) -> None:
        """Checkpoint the seen glows once they have paused long enough."""
        if self._checkpoint_at is not None and now >= self._checkpoint_at:
            self._checkpoint_at = None
            self._checkpoint_seen()

    def close(self) -> None:
        self._seen.close()

    def _dispatch(
        self, topic: str, payload: bytes, correlation: bytes | None, expiry: object = None
    ) -> None:
        """Decode one message and emit its event; ``ProtocolError`` for anything off-protocol.

        ``expiry`` is the Message Expiry Interval the broker delivered it with (its remaining
        lifetime), if any."""
        match = self._topics.parse(topic)
        if match.lamp_id != self._lamp_id:
            raise ProtocolError(topic, f"not a topic of lamp {self._lamp_id}")
        if match.kind is Kind.GLOW:
            glow = decode_glow(topic, payload)
            if self._is_new(glow.touch):
                self._emit(GlowReceived.from_message(glow, waited_seconds=self._waited(expiry)))
                self._unkept.append(glow.touch)  # handed on (a sink that failed did not take it)
            else:
                logger.debug("lamp %s: dropped repeated glow %s", self._lamp_id, glow.touch)
        elif match.kind is Kind.GROUP:
            self._emit(GroupChanged.from_message(decode_group(topic, payload)))
        elif match.kind is Kind.PAIR_RESPONSE:
            response = decode_pair_response(topic, payload)
            with self._lock:
                waiter = self._waiters.get(correlation) if correlation is not None else None
            if waiter is not None:
                waiter.response = response
                waiter.done.set()
            elif not response.ok:  # fire and forget (a colour announced): say what went wrong
                logger.warning(
                    "lamp %s: the pairing service refused %s: %s",
                    self._lamp_id,
                    response.action.value,
                    response.reason or response.error,
                )
        else:
            raise ProtocolError(topic, f"lamps do not receive {match.kind.value} messages")

    def kept(self) -> None:
        """Every glow handed on so far is shown (or was judged by the core): record their ids
        as seen, in one write. Called after the owner's frame, off the glow's way."""
        if not self._unkept:
            return
        touches, self._unkept = self._unkept, []
        try:
            self._seen.remember(touches)
        except StateFileError as error:
            self._trouble.report("seen", error)
            return
        self._trouble.report("seen", None)
        if self._seen.unchecked >= _SEEN_CHECKPOINT_IDS:
            self._checkpoint_seen()
        self._checkpoint_at = time.monotonic() + _SEEN_CHECKPOINT_QUIET_SECONDS

    def _is_new(self, touch: str) -> bool:
        """Whether the glow of ``touch`` was neither shown before nor handed on already; a glow
        the seen-glow file cannot tell about (a damaged file) is shown all the same: shown
        perhaps twice beats never."""
        if touch in self._unkept:
            return False
        try:
            known = self._seen.known(touch)
        except StateFileError as error:
            self._trouble.report("seen", error)
            return True
        return not known

    def _checkpoint_seen(self) -> None:
        try:
            self._seen.checkpoint()
        except StateFileError as error:
            self._trouble.report("seen", error)

    def _waited(self, remaining: object) -> float | None:
        """How long the broker kept a glow, told by its expiry alone (no clock involved).

        The broker delivers a glow with what is left of the relay's Message Expiry Interval, and
        the relay gives every glow the same one: so the most left on any glow seen is that
        interval (a glow delivered at once keeps all of it), and a glow with less left waited
        the difference. ``None`` for a glow without an expiry. Until the link has seen a glow
        delivered at once (just after a restart, with a backlog), the age is measured from the
        freshest glow seen — under by at most the relay's expiry, which bounds it anyway.
        """
        if not isinstance(remaining, int):
            return None
        if remaining > self._glow_expiry:  # kept for the next start (device/glow_expiry.py)
            self._glow_expiry = remaining
            save_glow_expiry(self._state_dir, remaining)
        return float(self._glow_expiry - remaining)
