"""THE forwarding rule: what the relay does with one touch. Start reading here.

A touch arrives on ``…/lamp/{X}/touch``; X comes from the topic (the broker's ACL ties it to the
MQTT username), never from the payload. ``ForwardingRule.decide`` answers with a ``Drop`` or a
``Forward``; the relay (server/relay.py) only carries the answer out. The checks, in order:

1. **Bad payload** — not a valid ``Touch`` (protocol/): dropped; the relay counts it and logs it
   at most once per lamp per minute.
2. **Rate limited** — X's token bucket (server/ratelimit.py) is empty: dropped. Checked before
   any store access, so a flooding lamp costs a dictionary look-up, not a database write.
3. **Unknown lamp** (credentials but no store record, e.g. removed) or **unpaired** (in no
   group): dropped, and the relay re-publishes X's retained group state as "not paired"
   (``notify_sender``) so the lamp can show it.
4. **Alone** — X's group has no other member yet: dropped (its group state already says so).
5. **Duplicate** — (X, stream, seq) was recorded before: QoS 1 redelivered it, or the lamp's
   outbox sent it twice. Dropped. The record is in the store, so it survives relay restarts,
   and it is keyed by ``stream`` too, so a lamp whose counter was reset (factory reset: new
   random stream) is not mistaken for one repeating itself. **Except when the glows may have
   been lost** (found by tests/faults): the broker's redelivery (DUP flag: a relay took this
   touch and never acknowledged it, so it may have died after recording it but before its
   glows left), or a repeat of a touch whose glows went out on a connection that ended before
   the broker can be trusted to have saved them (server/confirmations.py). Then the glows go
   out again; lamps drop a glow whose touch id they have shown, so nobody sees it twice.
6. **Forward** — one ``Glow`` to every *other* member of X's group: the touch's colour, the
   touch id ``X:stream:seq`` (lamps drop a glow id they have already shown), and ``at`` = the
   relay's clock (the lamp's ``ts`` may be wrong, so it is never used for timing).

**Mutual.** When X touches and another member Y's last accepted touch is at most
``mutual_window`` seconds old, the two touches crossed: both lamps get a glow marked mutual.
Exactly what each one receives for X's touch:

- Y (every member whose last touch is inside the window): X's glow with ``mutual: true``;
- X itself: one extra glow ``{"touch": X's touch id, "from": Y, "color": Y's colour,
  "mutual": true}`` — the answer to its own touch, from the member who touched most recently
  (one glow, however many crossed). Y already saw X's colour above, and X had earlier seen Y's
  touch as a plain glow, so both lamps now show the mutual moment;
- every other member: X's glow with ``mutual: false``.

"Last accepted touch" is the store's ``Lamp.last_touch_ms``, so mutual detection works across
relay restarts and several relays. It uses the relay's clock when a touch is *handled*: touches
that queued up while no relay ran are handled within moments of each other and may show as
mutual. Rate-limited, duplicate and dropped touches never count. A window of 0 turns mutual off.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from touchlamp.protocol import Glow, ProtocolError, Touch, decode_touch, touch_id
from touchlamp.server.confirmations import UnconfirmedGlows
from touchlamp.server.ratelimit import RateLimiter
from touchlamp.server.store.base import Lamp, Store, UnknownLampError

__all__ = ["Addressed", "Decision", "Drop", "DropReason", "Forward", "ForwardingRule"]


class DropReason(enum.Enum):
    """Why a touch was not forwarded; the value is the ``reason`` label of the metric."""

    BAD_PAYLOAD = "bad-payload"
    RATE_LIMITED = "rate-limited"
    UNKNOWN_LAMP = "unknown-lamp"
    UNPAIRED = "unpaired"
    ALONE = "alone"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    # Re-publish the sender's retained group state ("not paired") so the lamp can show it.
    notify_sender: bool = False
    # For BAD_PAYLOAD: what was wrong, for the (throttled) log line.
    error: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class Addressed:
    """A glow and the lamp it goes to."""

    to: str
    glow: Glow


@dataclass(frozen=True, slots=True)
class Forward:
    touch: Touch
    glows: tuple[Addressed, ...]
    # Members whose touch this one crossed (empty unless mutual).
    mutual_with: tuple[str, ...] = ()
    # A redelivered duplicate forwarded again (rule 5): its glows may have gone out before.
    repeat: bool = False


Decision = Drop | Forward


class ForwardingRule:
    """Decides the fate of each touch. Uses the store (lookups, the de-duplication record) and
    the injected clock (seconds since the epoch); not thread-safe (one worker thread)."""

    def __init__(
        self,
        *,
        store: Store,
        limiter: RateLimiter,
        clock: Callable[[], float],
        mutual_window_seconds: float,
        unconfirmed: UnconfirmedGlows | None = None,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._clock = clock
        self._mutual_window_ms = round(mutual_window_seconds * 1000)
        self._unconfirmed = unconfirmed

    def decide(
        self, sender: str, payload: bytes, *, topic: str, redelivered: bool = False
    ) -> Decision:
        """``sender`` is the lamp id from ``topic``; ``payload`` the raw bytes received;
        ``redelivered`` whether the broker flagged it DUP (see rule 5)."""
        try:
            touch = decode_touch(topic, payload)
        except ProtocolError as error:
            return Drop(DropReason.BAD_PAYLOAD, error=error)
        if not self._limiter.allow(sender):
            return Drop(DropReason.RATE_LIMITED)
        group = self._store.group_of(sender)
        if group is None:
            known = self._store.get_lamp(sender) is not None
            reason = DropReason.UNPAIRED if known else DropReason.UNKNOWN_LAMP
            return Drop(reason, notify_sender=True)
        others = [member for member in group.members if member.id != sender]
        if not others:
            return Drop(DropReason.ALONE)
        now_ms = round(self._clock() * 1000)
        try:
            new = self._store.record_touch(sender, touch.stream, touch.seq, now_ms=now_ms)
        except UnknownLampError:
            # Removed by the operator between the two reads above.
            return Drop(DropReason.UNKNOWN_LAMP, notify_sender=True)
        this_touch = touch_id(sender, touch.stream, touch.seq)
        if not new and not (redelivered or self._maybe_lost(this_touch)):
            return Drop(DropReason.DUPLICATE)
        # ``others`` was read before record_touch, so it holds each member's touch *before*
        # this one — which is what "crossed within the window" compares against.
        partners = [member for member in others if self._crossed(member, now_ms)]
        partner_ids = {member.id for member in partners}
        glows = [
            Addressed(
                to=member.id,
                glow=Glow(
                    touch=this_touch,
                    sender=sender,
                    color=touch.color,
                    mutual=member.id in partner_ids,
                    at=now_ms,
                ),
            )
            for member in others
        ]
        if partners:
            latest = max(partners, key=lambda member: member.last_touch_ms or 0)
            answer = Glow(
                touch=this_touch, sender=latest.id, color=latest.color, mutual=True, at=now_ms
            )
            glows.append(Addressed(to=sender, glow=answer))
        if self._unconfirmed is not None:
            self._unconfirmed.forwarded(this_touch)
        return Forward(
            touch=touch,
            glows=tuple(glows),
            mutual_with=tuple(member.id for member in partners),
            repeat=not new,
        )

    def _maybe_lost(self, touch: str) -> bool:
        return self._unconfirmed is not None and self._unconfirmed.maybe_lost(touch)

    def _crossed(self, member: Lamp, now_ms: int) -> bool:
        if member.last_touch_ms is None or self._mutual_window_ms <= 0:
            return False
        # abs(): another relay with a slightly faster clock may have written a later time.
        return abs(now_ms - member.last_touch_ms) <= self._mutual_window_ms
