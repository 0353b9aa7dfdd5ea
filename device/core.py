"""The lamp core: every gesture and every look of the lamp, as a pure state machine.

Nothing here touches pins, sockets, threads or the system clock. Events go in, effects and LED
frames come out, and the caller decides when "now" is::

    core = LampCore(lamp_id="lamp-a", color="#ff8800", looks=settings.looks,
                    quiet_hours=settings.quiet_hours, local_time=clock.local_now,
                    now=clock.monotonic())
    effects = core.handle(TouchDown(), now)      # -> list[Effect] for the caller to carry out
    light.show(core.frame(now))                  # -> Rgb of output values (PWM duty) in 0..1
    wake_at = core.next_change(now)              # -> monotonic time, or None: nothing to redraw

``now`` is ``Clock.monotonic()`` seconds (animations must not jump with NTP); wall-clock needs
(quiet hours, a glow's age) go through the injected ``local_time`` function, which returns an
aware datetime. Quiet hours are judged when an event is handled, so the driver delivers a
``Tick`` whenever ``next_change`` comes due. The driver loop (one thread owns the core; other
threads only put events on its queue — "called from any thread" callbacks must not call the
core directly)::

    deadline = core.next_change(clock.monotonic())
    while running:
        timeout = None if deadline is None else max(0.0, deadline - clock.monotonic())
        event = queue.get(timeout=timeout)        # queue.Empty → Tick()
        now = clock.monotonic()
        for effect in core.handle(event, now): carry_out(effect)
        light.show(core.frame(now))
        deadline = core.next_change(now)

When nothing animates, ``next_change`` is ``None`` (or the next quiet-hours boundary, hours
away), so an idle lamp sleeps in ``queue.get`` and uses no CPU. A long fade asks to be redrawn
only when its perceived brightness has moved by ``looks.frame_step``.

Gestures and looks (timings and levels in ``LookSettings``):

- **tap** (press and release within ``hold_seconds``): ``SendTouch`` with your colour and a
  swell in your colour; when offline, a dimmer double swell (queued in the outbox); when the group
  state says you have no partners, no touch is sent and a faint warm triple swell says "not
  paired". A later ``TouchResult`` (from the outbox or the relay) corrects the feedback within
  ``tap_result_window_seconds``, as does an empty ``GroupChanged`` that follows a tap.
- **glow received**: rise, breathe in the sender's colour, then fade to dark over many minutes,
  linear in perceived brightness (so the PWM value falls along the gamma curve). A newer glow
  replaces an older one; glows arriving less than ``coalesce_seconds`` apart are one glow in the
  newest sender's colour (a backlog after reconnecting is not fifty flashes); a glow older than
  ``glow_max_age_seconds``, or one already showing (same touch id), is ignored. A glow's age is
  how long the broker kept it (``waited_seconds``, from its message expiry) when known: the
  lamp's own clock may be wrong by anything (tests/faults: a year), and comparing it with the
  relay's ``at`` made such a lamp drop every glow. Only a glow without an expiry is aged by
  the lamp's clock against ``at``. A glow that ended before the driver handed in anything at or
  after its peak (its thread paused longer than the whole look) is drawn from its peak when the
  driver comes back: a touch never passes unseen because a frame came late.
- **mutual glow**: the sender's colour and yours take turns softly, then the fade.
- **tap while glowing** answers: a tap like any other, its swell blended over the glow.
- **long hold**: after ``hold_seconds`` the hue cycles; release picks it: ``PersistColor`` and
  ``AnnounceColor``, and a double swell in the new colour.
- **quiet hours**: incoming glows stay dark (the lamp's status patterns too); when they end,
  a soft "missed touch" glow in the last sender's colour. A glow already showing keeps fading.
  ``SetQuietNow(True)`` makes the lamp quiet the same way until ``SetQuietNow(False)``, on top
  of quiet hours (the owner page's and Home Assistant's "Quiet" switch).
- **missed touches**: glows not shown (quiet, or too old) since the lamp was last touched are
  counted (``missed_touches``); touching the lamp resets the count. ``last_glow`` is the last
  glow received, shown or missed.
- **not connected** longer than ``disconnected_grace_seconds``: a slow swell (level 0 turns
  it off), or a quicker cool-white one when the machine has no network at all
  (``set_network``); **bad credentials**: a faster reddish swell at once; **partner online**: a
  faint steady light in their colour (``ambient_level``). The brightest of glow, status and
  ambient shows.
- every frame is scaled by ``max_brightness``; a mono LED's adapter shows intensity only.

Every gesture, and the choice of what shows, is in this one file on purpose (a newcomer finds
the lamp's behaviour here, ARCHITECTURE.md); the animations themselves are values in
device/animations.py, the events in device/events.py.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import assert_never

from touchlamp.config.looks import LookSettings, QuietHours, StatusLook
from touchlamp.device.animations import GlowAnimation, Pulse, frame_interval, status_sample
from touchlamp.device.events import (
    Connected,
    Disconnected,
    Event,
    GlowReceived,
    GroupChanged,
    Member,
    SetQuietNow,
    StateTrouble,
    Tick,
    TouchDown,
    TouchOutcome,
    TouchResult,
    TouchUp,
)
from touchlamp.device.looks import (
    BLACK,
    Rgb,
    from_hue,
    mix,
    to_output,
)
from touchlamp.device.status import GlowNews

__all__ = [
    "AnnounceColor",
    "ClaimHeld",
    "Effect",
    "LampCore",
    "PersistColor",
    "SendTouch",
]


# ---- effects out ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendTouch:
    """Send a touch in ``color`` (the link adds seq, stream and timestamp; the outbox keeps it
    while offline). Report what became of it with ``TouchResult``."""

    color: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceColor:
    """Tell the group this lamp's new colour."""

    color: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistColor:
    """Store this lamp's new colour so it survives a restart (pass it as ``color`` next time)."""

    color: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimHeld:
    """While a claim waits (``set_claim_waiting``), the lamp was held for ``seconds``: the
    owner proves they are at the lamp (device/owner_auth.py). No colour was picked."""

    seconds: float


Effect = SendTouch | AnnounceColor | PersistColor | ClaimHeld


# ---- the core ---------------------------------------------------------------------------------


class LampCore:
    """One lamp's behaviour. Not thread-safe: one driver thread owns it (see the module doc)."""

    def __init__(
        self,
        *,
        lamp_id: str,
        color: str,
        looks: LookSettings,
        quiet_hours: QuietHours,
        local_time: Callable[[], dt.datetime],
        now: float,
    ) -> None:
        self._lamp_id = lamp_id
        self._own = Rgb.from_hex(color)
        self._own_hex = self._own.to_hex()
        self._looks = looks
        self._quiet_hours = quiet_hours
        if local_time().tzinfo is None:
            raise ValueError(
                "local_time must return an aware datetime, e.g. SystemClock().local_now"
            )
        self._local_time = local_time

        self._pressed_at: float | None = None
        self._claim_waiting = False
        self._no_network = False
        self._press_hue = 0.0
        self._feedback: Pulse | None = None
        self._last_tap_at: float | None = None
        self._last_tap_outcome: TouchOutcome | None = None
        self._glow: GlowAnimation | None = None
        self._last_glow_arrival: float | None = None
        self._missed: GlowReceived | None = None

        self._connected = False
        self._auth_failed = False
        self._not_enrolled = False
        self._trouble_since: float | None = None  # since when the state directory refuses writes
        self._down_since = now  # the lamp starts offline; the grace period counts from start-up
        self._group_known = False
        self._partners: tuple[Member, ...] = ()

        self._quiet = False  # effective: quiet hours or quiet now
        self._in_quiet_hours = False
        self._quiet_now = False
        self._quiet_boundary: float | None = None
        self._last_glow: GlowNews | None = None
        self._missed_count = 0
        # Touch ids already counted as missed (a redelivery must not count twice); bounded.
        self._missed_ids: dict[str, None] = {}
        self._refresh_quiet(now)

    # ---- observers ----

    @property
    def lamp_id(self) -> str:
        return self._lamp_id

    @property
    def color(self) -> str:
        """This lamp's colour, ``#rrggbb`` (changes when a hold picks a new one)."""
        return self._own_hex

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def quiet(self) -> bool:
        """Whether glows stay dark: quiet hours were in force when the last event was handled,
        or the owner asked for quiet now."""
        return self._quiet

    # ---- the owner's changes (the lamp's page, ``device set``) ----

    def reconfigure(self, *, looks: LookSettings, quiet_hours: QuietHours, now: float) -> None:
        """New looks and quiet hours from now on; a glow already showing keeps its own."""
        self._looks = looks
        self._quiet_hours = quiet_hours
        self._refresh_quiet(now)

    def set_network(self, *, up: bool) -> None:
        """Whether the machine has a network at all (a route out): while it has none, "not
        connected" shows as the no-network look (``looks.no_network``)."""
        self._no_network = not up

    def set_claim_waiting(self, on: bool) -> None:
        """While on, a hold confirms the owner's claim (``ClaimHeld``) instead of cycling the
        colour: the lamp shows its own colour, steady, while held."""
        self._claim_waiting = on

    def adopt_color(self, color: str) -> None:
        """Take ``color`` as the lamp's own without a show or an announcement (the operator's
        colour for a lamp that has none of its own yet)."""
        self._own = Rgb.from_hex(color)
        self._own_hex = self._own.to_hex()

    def choose_color(self, color: str, now: float) -> list[Effect]:
        """The owner picked ``color`` (not by holding): as a hold's pick, without the hold."""
        self._own = Rgb.from_hex(color)
        self._own_hex = self._own.to_hex()
        self._feedback = Pulse.of(self._looks.color_chosen, own=self._own, start=now)
        return [PersistColor(color=self._own_hex), AnnounceColor(color=self._own_hex)]

    @property
    def quiet_now(self) -> bool:
        """Whether the owner asked for quiet now (``SetQuietNow``), regardless of the hours."""
        return self._quiet_now

    @property
    def missed_touches(self) -> int:
        """Glows not shown (quiet, or arrived too old) since the lamp was last touched."""
        return self._missed_count

    @property
    def last_glow(self) -> GlowNews | None:
        """The last glow received, shown or missed (duplicates and stale redeliveries aside)."""
        return self._last_glow

    @property
    def partners(self) -> tuple[Member, ...]:
        """The group's other lamps, as the last ``GroupChanged`` named them."""
        return self._partners

    # ---- events ----

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Apply ``event`` at monotonic time ``now``; returns the effects to carry out, in order."""
        self._refresh_quiet(now)
        self._drop_finished(now)
        match event:
            case TouchDown():
                return self._on_down(now)
            case TouchUp():
                return self._on_up(now)
            case GlowReceived():
                self._on_glow(event, now)
            case GroupChanged():
                self._on_group(event, now)
            case Connected():
                self._connected = True
                self._auth_failed = False
            case Disconnected(auth_failed=auth_failed, not_enrolled=not_enrolled):
                self._not_enrolled = not_enrolled
                self._on_disconnected(now, auth_failed=auth_failed)
            case TouchResult(outcome=outcome):
                self._on_result(outcome, now)
            case SetQuietNow(on=on):
                self._quiet_now = on
                self._settle_quiet(now)
            case Tick():
                pass
            case StateTrouble(failing=failing):
                if failing and self._trouble_since is None:
                    self._trouble_since = now
                elif not failing:
                    self._trouble_since = None
            case _:
                assert_never(event)
        return []

    def _on_down(self, now: float) -> list[Effect]:
        self._missed_count = 0  # the owner is at the lamp: what was missed has been seen to
        if self._pressed_at is None:
            self._pressed_at = now
            self._press_hue = self._own.hue()
        return []

    def _on_up(self, now: float) -> list[Effect]:
        pressed_at, self._pressed_at = self._pressed_at, None
        if pressed_at is None:
            return []  # a release without a press (e.g. the lamp started while touched)
        if now - pressed_at < self._looks.hold_seconds:
            return self._tap(now)
        if self._claim_waiting:
            return [ClaimHeld(seconds=now - pressed_at)]
        chosen = from_hue(self._hue_at(now, pressed_at)).to_hex()
        self._own = Rgb.from_hex(chosen)
        self._own_hex = chosen
        self._feedback = Pulse.of(self._looks.color_chosen, own=self._own, start=now)
        return [PersistColor(color=chosen), AnnounceColor(color=chosen)]

    def _tap(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._group_known and not self._partners:
            outcome = TouchOutcome.REFUSED
        else:
            outcome = TouchOutcome.SENT if self._connected else TouchOutcome.QUEUED
            effects.append(SendTouch(color=self._own_hex))
        self._last_tap_at = now
        self._show_outcome(outcome, now)
        return effects

    def _show_outcome(self, outcome: TouchOutcome, now: float) -> None:
        self._last_tap_outcome = outcome
        look = {
            TouchOutcome.SENT: self._looks.tap_sent,
            TouchOutcome.QUEUED: self._looks.tap_queued,
            TouchOutcome.REFUSED: self._looks.tap_refused,
        }[outcome]
        self._feedback = Pulse.of(look, own=self._own, start=now)

    def _on_result(self, outcome: TouchOutcome, now: float) -> None:
        if self._last_tap_at is None:
            return
        if now - self._last_tap_at > self._looks.tap_result_window_seconds:
            return
        if outcome != self._last_tap_outcome:
            self._show_outcome(outcome, now)

    def _on_group(self, event: GroupChanged, now: float) -> None:
        self._group_known = True
        self._partners = tuple(m for m in event.members if m.id != self._lamp_id)
        if not self._partners:
            # The relay answers an unpaired lamp's touch with its (empty) group state.
            self._on_result(TouchOutcome.REFUSED, now)

    def _on_disconnected(self, now: float, *, auth_failed: bool) -> None:
        if self._connected:
            # Only the first report counts: a link retrying every few seconds must not keep
            # restarting the grace period.
            self._down_since = now
        self._connected = False
        if auth_failed and not self._auth_failed:
            self._auth_failed = True
            self._down_since = now

    def _on_glow(self, event: GlowReceived, now: float) -> None:
        if event.waited_seconds is not None:
            age_ms = event.waited_seconds * 1000.0
        else:
            age_ms = self._local_time().timestamp() * 1000.0 - event.at
        if age_ms > self._looks.glow_max_age_seconds * 1000.0:
            self._count_missed(event)
            return
        current = self._glow
        if current is not None and current.touch == event.touch:
            return
        if self._quiet:
            if self._count_missed(event) and (self._missed is None or event.at >= self._missed.at):
                self._missed = event
            return
        previous_arrival, self._last_glow_arrival = self._last_glow_arrival, now
        color = Rgb.from_hex(event.color)
        if current is not None:
            in_burst = (
                previous_arrival is not None
                and now - previous_arrival < self._looks.coalesce_seconds
            )
            if event.at < current.at:
                return  # an older touch than the one showing (a late redelivery)
            self._last_glow = _news(event, shown=True)
            if in_burst:
                # Keep the animation running; show the newest touch of the burst.
                self._glow = replace(
                    current,
                    touch=event.touch,
                    sender=event.sender,
                    color=color,
                    at=event.at,
                    mutual=event.mutual,
                )
                return
        self._last_glow = _news(event, shown=True)
        self._glow = GlowAnimation(
            touch=event.touch,
            sender=event.sender,
            color=color,
            at=event.at,
            mutual=event.mutual,
            start=now,
            look=self._looks.glow,
            looks=self._looks,
        )

    def _count_missed(self, event: GlowReceived) -> bool:
        """Count ``event`` as missed; ``False`` when this touch was counted already."""
        if event.touch in self._missed_ids:
            return False
        self._missed_ids[event.touch] = None
        if len(self._missed_ids) > _MISSED_IDS_KEPT:
            del self._missed_ids[next(iter(self._missed_ids))]
        self._missed_count += 1
        self._last_glow = _news(event, shown=False)
        return True

    # ---- time ----

    def _refresh_quiet(self, now: float) -> None:
        hours = self._quiet_hours
        if not hours.enabled:
            self._in_quiet_hours, self._quiet_boundary = False, None
        else:
            local = self._local_time()
            self._in_quiet_hours = _in_quiet_hours(local.time(), hours)
            self._quiet_boundary = now + _seconds_to_boundary(local, hours)
        self._settle_quiet(now)

    def _settle_quiet(self, now: float) -> None:
        """Update the effective quiet; when it ends, show the last missed glow softly."""
        was_quiet = self._quiet
        self._quiet = self._in_quiet_hours or self._quiet_now
        if was_quiet and not self._quiet and self._missed is not None:
            missed, self._missed = self._missed, None
            self._glow = GlowAnimation(
                touch=missed.touch,
                sender=missed.sender,
                color=Rgb.from_hex(missed.color),
                at=missed.at,
                mutual=False,
                start=now,
                look=self._looks.missed,
                looks=self._looks,
            )

    def _drop_finished(self, now: float) -> None:
        if self._feedback is not None and now >= self._feedback.end:
            self._feedback = None
        if self._glow is not None:
            # The driver draws a frame after every event it hands in (see the module doc), so
            # this is where the core learns that a glow was drawn — or ended unseen.
            self._glow = self._glow.as_driven_at(now)
            if self._glow.sample(now, self._own) is None:
                self._glow = None

    def _hue_at(self, now: float, pressed_at: float) -> float:
        cycling = now - (pressed_at + self._looks.hold_seconds)
        return self._press_hue + max(0.0, cycling) / self._looks.hue_cycle_seconds

    def _status(self) -> tuple[StatusLook, float] | None:
        """The status pattern to show and when it started, if any (ignoring quiet hours)."""
        if self._not_enrolled:
            look: StatusLook = self._looks.not_enrolled
            since = self._down_since
        elif self._auth_failed:
            look = self._looks.auth_failed
            since = self._down_since
        elif self._trouble_since is not None:
            look = self._looks.state_trouble
            since = self._trouble_since
        elif not self._connected:
            look = self._looks.no_network if self._no_network else self._looks.disconnected
            since = self._down_since + self._looks.disconnected_grace_seconds
        else:
            return None
        if look.level <= 0.0:
            return None
        return look, since

    # ---- frames ----

    def frame(self, now: float) -> Rgb:
        """The LED's output values (PWM duty, gamma applied, capped) at ``now``."""
        looks = self._looks
        return to_output(self._perceived(now), gamma=looks.gamma, cap=looks.max_brightness)

    def _perceived(self, now: float) -> Rgb:
        if self._pressed_at is not None and now >= self._pressed_at + self._looks.hold_seconds:
            if self._claim_waiting:
                return self._own.scaled(self._looks.pick_level)
            return from_hue(self._hue_at(now, self._pressed_at)).scaled(self._looks.pick_level)
        candidates: list[Rgb] = []
        if self._glow is not None:
            glow = self._glow.sample(now, self._own)
            if glow is not None:
                candidates.append(glow)
        if not self._quiet:
            status = self._status()
            if status is not None and now >= status[1]:
                look, since = status
                candidates.append(status_sample(look, own=self._own, since=since, now=now))
            ambient = self._ambient()
            if ambient is not None:
                candidates.append(ambient)
        base = max(candidates, key=Rgb.max_channel, default=BLACK)
        if self._feedback is not None:
            base = mix(base, self._feedback.color, self._feedback.weight(now))
        return base

    def _ambient(self) -> Rgb | None:
        level = self._looks.ambient_level
        if level <= 0.0 or not self._connected:
            return None
        for partner in self._partners:
            if partner.online:
                return Rgb.from_hex(partner.color).scaled(level)
        return None

    def is_animating(self, now: float) -> bool:
        """Whether the light is changing on its own at ``now`` (a timer alone does not count)."""
        return self._animation_change(now) is not None

    def next_change(self, now: float) -> float | None:
        """The monotonic time the frame may next differ from ``frame(now)``, or ``None``.

        Covers animations and timers (hold threshold, grace period, quiet-hours boundary);
        deliver a ``Tick`` at that time, then redraw.
        """
        times = [self._animation_change(now)]
        if self._pressed_at is not None and now < self._pressed_at + self._looks.hold_seconds:
            times.append(self._pressed_at + self._looks.hold_seconds)
        status = self._status()
        if status is not None and now < status[1]:
            times.append(status[1])
        times.append(self._quiet_boundary)
        return min((t for t in times if t is not None), default=None)

    def _animation_change(self, now: float) -> float | None:
        rate = self._looks.frame_rate
        hold_at = None if self._pressed_at is None else self._pressed_at + self._looks.hold_seconds
        if hold_at is not None and now >= hold_at:
            return now + 1.0 / rate
        times: list[float | None] = []
        if self._feedback is not None:
            times.append(self._feedback.next_change(now, rate))
        if self._glow is not None:
            times.append(self._glow.next_change(now))
        status = self._status()
        if status is not None and not self._quiet and now >= status[1]:
            look = status[0]
            slope = math.pi * look.level / look.period_seconds
            step = frame_interval(frame_rate=rate, step=self._looks.frame_step, slope=slope)
            times.append(now + step)
        return min((t for t in times if t is not None), default=None)


_MISSED_IDS_KEPT = 1000


def _news(event: GlowReceived, *, shown: bool) -> GlowNews:
    return GlowNews(
        from_lamp=event.sender,
        color=event.color,
        mutual=event.mutual,
        shown=shown,
        at=event.at / 1000.0,
    )


def _in_quiet_hours(local: dt.time, hours: QuietHours) -> bool:
    moment = local.replace(tzinfo=None)
    if hours.start < hours.end:
        return hours.start <= moment < hours.end
    return moment >= hours.start or moment < hours.end


def _seconds_to_boundary(local: dt.datetime, hours: QuietHours) -> float:
    """Seconds from ``local`` to the next start or end of quiet hours (in local wall time)."""
    best = math.inf
    for days in (0, 1):
        day = local.date() + dt.timedelta(days=days)
        for boundary in (hours.start, hours.end):
            at = dt.datetime.combine(day, boundary, tzinfo=local.tzinfo)
            delta = at.timestamp() - local.timestamp()
            if 0.0 < delta < best:
                best = delta
    return best
