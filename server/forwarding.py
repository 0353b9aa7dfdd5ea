"""THE forwarding rule: what the relay does with one touch. Start reading here.

A touch arrives on ``…/lamp/{X}/touch``; X comes from the topic (the broker's ACL ties it to the
MQTT username), never from the payload. ``ForwardingRule.decide`` answers with a ``Drop`` or a
``Forward``; the relay only carries the answer out (server/glow_delivery.py). The checks, in order:

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
   the broker can be trusted to have saved them: one of this relay's broker connections ended
   (or the relay started) within two keepalives after the store recorded the touch
   (server/confirmations.py; the store tells when, for repeats only). Then the glows go out
   again; lamps drop a glow whose touch id they have shown, so nobody sees it twice — a
   re-forward that was not needed is harmless.
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

**Many at once.** The relay hands over every touch waiting in its queue (``screen`` then
``decide_all``); the answers are exactly those of deciding them one by one, in order, with one
clock reading — but one store transaction records them all, and the groups come from memory
(server/membership.py), checked against the store's membership revision in that same
transaction. Each touch sees the touches before it in the batch (de-duplication, and "last
accepted touch" for mutual).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from touchlamp.protocol import Glow, ProtocolError, Touch, decode_touch, touch_id
from touchlamp.server.confirmations import ConnectionEnds
from touchlamp.server.membership import Member, MembershipCache
from touchlamp.server.ratelimit import RateLimiter
from touchlamp.server.store.base import (
    RecordedTouches,
    Store,
    StoreUnavailableError,
    TouchKey,
    UnknownLampError,
)

__all__ = [
    "Addressed",
    "Decision",
    "Drop",
    "DropReason",
    "Forward",
    "ForwardingRule",
    "Received",
    "Screened",
]

# Recording a batch is refused while the groups it was decided with are out of date; each refusal
# reloads them. Several in a row means pairings keep changing under the relay: give up for now
# (the relay retries later, the touches stay with the broker).
_ATTEMPTS = 5


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
    # A repeat forwarded again (rule 5): its glows may have gone out before.
    repeat: bool = False


Decision = Drop | Forward


@dataclass(frozen=True, slots=True)
class Received:
    """A touch message as it arrived: ``sender`` is the lamp id from ``topic``, ``payload`` the
    raw bytes, ``redelivered`` whether the broker flagged it DUP (see rule 5)."""

    sender: str
    payload: bytes
    topic: str
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Screened:
    """Touches after rules 1 and 2 (no store needed): for each, its ``Touch`` or its ``Drop``."""

    received: tuple[Received, ...]
    outcomes: tuple[Touch | Drop, ...]


@dataclass(frozen=True, slots=True)
class _Pending:
    """A touch that passed rules 1 to 4 and waits for the store (rule 5)."""

    index: int
    sender: str
    touch: Touch
    others: tuple[Member, ...]
    redelivered: bool


class ForwardingRule:
    """Decides the fate of each touch. Uses the store (the de-duplication record, last touches),
    the groups cached from it, the injected clock (seconds since the epoch) and, for repeats,
    ``connection_ends`` (without it, only a DUP redelivery is forwarded again); not
    thread-safe (one worker thread)."""

    def __init__(
        self,
        *,
        store: Store,
        limiter: RateLimiter,
        clock: Callable[[], float],
        mutual_window_seconds: float,
        connection_ends: ConnectionEnds | None = None,
        memberships: MembershipCache | None = None,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._clock = clock
        self._mutual_window_ms = round(mutual_window_seconds * 1000)
        self._connection_ends = connection_ends
        self.memberships = memberships if memberships is not None else MembershipCache(store)

    def decide(
        self, sender: str, payload: bytes, *, topic: str, redelivered: bool = False
    ) -> Decision:
        """One touch: ``decide_all`` of a batch of one."""
        received = Received(sender=sender, payload=payload, topic=topic, redelivered=redelivered)
        return self.decide_all(self.screen([received]))[0]

    def screen(self, touches: Sequence[Received]) -> Screened:
        """Rules 1 and 2. Separate from ``decide_all`` so that retrying the store (the relay does,
        when it is unavailable) does not take a second token from the rate limiter."""
        outcomes: list[Touch | Drop] = []
        for received in touches:
            try:
                touch = decode_touch(received.topic, received.payload)
            except ProtocolError as error:
                outcomes.append(Drop(DropReason.BAD_PAYLOAD, error=error))
                continue
            if self._limiter.allow(received.sender):
                outcomes.append(touch)
            else:
                outcomes.append(Drop(DropReason.RATE_LIMITED))
        return Screened(received=tuple(touches), outcomes=tuple(outcomes))

    def decide_all(self, screened: Screened) -> list[Decision]:
        """Rules 3 to 6 for the screened touches, in order, recording them in one transaction.
        ``StoreUnavailableError`` (nothing recorded) if the store failed, or if the groups kept
        changing while this was decided."""
        now_ms = round(self._clock() * 1000)
        for _attempt in range(_ATTEMPTS):
            decisions, pending = self._by_membership(screened)
            if not pending:
                return [decision for decision in decisions if decision is not None]
            recorded = self._record(pending, now_ms=now_ms)
            if recorded is not None:
                return self._finish(decisions, pending, recorded, now_ms=now_ms)
            self.memberships.refresh()
        raise StoreUnavailableError(
            f"the lamps' groups changed {_ATTEMPTS} times while {len(screened.received)} touches "
            "were being decided; they stay with the broker and are tried again"
        )

    def _by_membership(self, screened: Screened) -> tuple[list[Decision | None], list[_Pending]]:
        """Rules 3 and 4 from the cached groups; the rest wait for the store."""
        decisions: list[Decision | None] = []
        pending: list[_Pending] = []
        for index, (received, outcome) in enumerate(
            zip(screened.received, screened.outcomes, strict=True)
        ):
            if isinstance(outcome, Drop):
                decisions.append(outcome)
                continue
            sender = received.sender
            membership = self.memberships.get(sender)
            if membership.members is None:
                reason = DropReason.UNPAIRED if membership.known else DropReason.UNKNOWN_LAMP
                decisions.append(Drop(reason, notify_sender=True))
                continue
            others = tuple(member for member in membership.members if member.id != sender)
            if not others:
                decisions.append(Drop(DropReason.ALONE))
                continue
            decisions.append(None)
            pending.append(_Pending(index, sender, outcome, others, received.redelivered))
        return decisions, pending

    def _record(self, pending: list[_Pending], *, now_ms: int) -> RecordedTouches | None:
        watch = {member.id for item in pending for member in item.others}
        watch.update(item.sender for item in pending)
        try:
            return self._store.record_touches(
                [TouchKey(item.sender, item.touch.stream, item.touch.seq) for item in pending],
                now_ms=now_ms,
                watch=watch,
                revision=self.memberships.revision,
            )
        except UnknownLampError:
            # Removed without the revision moving (by hand, in SQL): reload and decide again.
            return None

    def _finish(
        self,
        decisions: list[Decision | None],
        pending: list[_Pending],
        recorded: RecordedTouches,
        *,
        now_ms: int,
    ) -> list[Decision]:
        """Rules 5 and 6, in order: each touch sees the last touches as the ones before it in
        the batch left them (the store moves ``last_touch_ms`` only forward, so does this)."""
        last = dict(recorded.last_touch_ms)
        for item, new, received_ms in zip(pending, recorded.new, recorded.received_ms, strict=True):
            lost = not new and (item.redelivered or self._may_have_lost(received_ms))
            decisions[item.index] = (
                self._forward(item, repeat=not new, last=last, now_ms=now_ms, first_ms=received_ms)
                if new or lost
                else Drop(DropReason.DUPLICATE)
            )
            if new:
                previous = last.get(item.sender)
                last[item.sender] = now_ms if previous is None else max(previous, now_ms)
        return [decision for decision in decisions if decision is not None]

    def _forward(
        self,
        item: _Pending,
        *,
        repeat: bool,
        last: dict[str, int | None],
        now_ms: int,
        first_ms: int,
    ) -> Forward:
        touch, sender = item.touch, item.sender
        this_touch = touch_id(sender, touch.stream, touch.seq)
        if repeat:
            # A repeat sent again keeps what its first forwarding could have made of it: it
            # crossed a touch made before it was first recorded (``first_ms``), never one made
            # since — that one was the mutual moment, and both lamps have shown it. Judged
            # afresh, a lamp restarted within the window got an answer glow for its own repeat:
            # the mutual moment again, under an id it had not seen (issue 18).
            partners = [
                member
                for member in item.others
                if self._crossed_before(last.get(member.id), first_ms)
            ]
        else:
            # ``last`` holds each member's touch *before* this one — which is what "crossed
            # within the window" compares against.
            partners = [
                member for member in item.others if self._crossed(last.get(member.id), now_ms)
            ]
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
            for member in item.others
        ]
        if partners:
            latest = max(partners, key=lambda member: last.get(member.id) or 0)
            answer = Glow(
                touch=this_touch, sender=latest.id, color=latest.color, mutual=True, at=now_ms
            )
            glows.append(Addressed(to=sender, glow=answer))
        return Forward(
            touch=touch,
            glows=tuple(glows),
            mutual_with=tuple(member.id for member in partners),
            repeat=repeat,
        )

    def _may_have_lost(self, received_ms: int) -> bool:
        ends = self._connection_ends
        return ends is not None and ends.may_have_lost(received_ms)

    def _crossed_before(self, last_touch_ms: int | None, first_ms: int) -> bool:
        """For a repeat: whether ``last_touch_ms`` came before its first recording at
        ``first_ms``, within the window (a later one is not known: ``last`` keeps the newest)."""
        if last_touch_ms is None or last_touch_ms > first_ms:
            return False
        return self._crossed(last_touch_ms, first_ms)

    def _crossed(self, last_touch_ms: int | None, now_ms: int) -> bool:
        if last_touch_ms is None or self._mutual_window_ms <= 0:
            return False
        # abs(): another relay with a slightly faster clock may have written a later time.
        return abs(now_ms - last_touch_ms) <= self._mutual_window_ms
