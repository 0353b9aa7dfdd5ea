"""The lamp core, driven by a hand-moved clock: what the LED shows at given times, per behaviour.

Expected values are worked out from the looks: a perceived level ``L`` of a channel ``c`` gives
the output ``(c * L) ** 2.2`` (default gamma).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import pytest

from touchlamp.config.looks import (
    DisconnectedLook,
    GlowLook,
    LookSettings,
    QuietHours,
    TapRefusedLook,
)
from touchlamp.device.clock import ManualClock, epoch_ms
from touchlamp.device.core import AnnounceColor, Effect, LampCore, PersistColor, SendTouch
from touchlamp.device.events import (
    Connected,
    Disconnected,
    Event,
    GlowReceived,
    GroupChanged,
    Member,
    SetQuietNow,
    Tick,
    TouchDown,
    TouchOutcome,
    TouchResult,
    TouchUp,
)
from touchlamp.device.looks import Rgb
from touchlamp.device.status import GlowNews
from touchlamp.protocol import decode_glow

BERLIN = ZoneInfo("Europe/Berlin")
NOON = dt.datetime(2026, 3, 10, 12, 0, tzinfo=BERLIN)
GAMMA = 2.2
ORANGE = "#ff8800"
BLUE = "#0000ff"
RED = "#ff0000"
GREEN = "#00ff00"

# Default looks, spelt out so the tables below read as timelines.
# The partner-online light off: the bench's partner is online, and these tables expect dark.
DEFAULT = LookSettings(ambient_level=0.0)
ATTACK = DEFAULT.glow.attack_seconds
BREATH = DEFAULT.glow.breath_seconds
BREATHING_END = ATTACK + DEFAULT.glow.breaths * BREATH
FADE = DEFAULT.glow.fade_seconds
FADE_END = BREATHING_END + FADE


def out(level: float, channel: float = 1.0) -> float:
    """The output value of a channel at a perceived level (default gamma, no cap)."""
    return float((channel * level) ** GAMMA)


class Bench:
    """A ``LampCore`` with a ``ManualClock``; by default connected and paired with lamp-b."""

    def __init__(
        self,
        *,
        looks: LookSettings = DEFAULT,
        quiet_hours: QuietHours | None = None,
        color: str = ORANGE,
        start: dt.datetime = NOON,
        connected: bool = True,
        partners: Iterable[Member] | None = (
            Member(id="lamp-b", name="B", color=BLUE, online=True),
        ),
    ) -> None:
        self.clock = ManualClock(start=start)
        self.core = LampCore(
            lamp_id="lamp-a",
            color=color,
            looks=looks,
            quiet_hours=quiet_hours or QuietHours(),
            local_time=self.clock.local_now,
            now=0.0,
        )
        if connected:
            self.core.handle(Connected(), 0.0)
        if partners is not None:
            me = Member(id="lamp-a", name="A", color=color, online=True)
            self.core.handle(GroupChanged(members=(me, *partners)), 0.0)

    def send(self, event: Event, at: float) -> list[Effect]:
        self.clock.advance_to(at)
        return self.core.handle(event, at)

    def frame(self, at: float) -> Rgb:
        # A frame depends on the events handled so far and on ``at`` alone (no clock reads),
        # so tables may sample any time after the last event.
        return self.core.frame(at)

    def tap(self, at: float, *, held: float = 0.15) -> list[Effect]:
        assert self.send(TouchDown(), at) == []
        return self.send(TouchUp(), at + held)

    def glow(
        self,
        at: float,
        *,
        color: str = BLUE,
        touch: str = "lamp-b:7:1",
        mutual: bool = False,
        age_seconds: float = 0.0,
    ) -> None:
        self.clock.advance_to(at)
        sent = epoch_ms(self.clock.local_now()) - int(age_seconds * 1000)
        event = GlowReceived(touch=touch, sender="lamp-b", color=color, at=sent, mutual=mutual)
        assert self.send(event, at) == []

    def drive(self, *, until: float, events: Iterable[tuple[float, Event]] = ()) -> list[float]:
        """Run the driver loop of the module doc: wake only for events and ``next_change``.

        Returns the times the loop woke up.
        """
        pending = sorted(events, key=lambda item: item[0])
        now = self.clock.monotonic()
        deadline = self.core.next_change(now)
        wakes: list[float] = []
        while True:
            event_at = pending[0][0] if pending else math.inf
            wake = min(math.inf if deadline is None else deadline, event_at)
            if wake > until:
                return wakes
            assert wake >= now, "next_change went back in time"
            now = self.clock.advance_to(wake)
            event = pending.pop(0)[1] if event_at <= wake else Tick()
            self.core.handle(event, now)
            wakes.append(now)
            deadline = self.core.next_change(now)


# ---- tap ----------------------------------------------------------------------------------------

TAP_AT, TAP_HELD = 1.0, 0.15
RELEASED = TAP_AT + TAP_HELD


@pytest.mark.parametrize(
    ("connected", "paired", "effects", "peak_at", "peak"),
    [
        # Sent: one swell to full in your own colour, peaking halfway through 1.2 s.
        (True, True, [SendTouch(color=ORANGE)], 0.6, Rgb(1.0, out(1.0, 0x88 / 255), 0.0)),
        # Offline: still sent (to the outbox), shown as two dimmer swells in your own colour.
        (False, True, [SendTouch(color=ORANGE)], 0.6, Rgb(out(0.4), out(0.4, 0x88 / 255), 0.0)),
        # Not paired: nothing to send; three faint warm-white swells.
        (True, False, [], 0.3, Rgb(out(0.3), out(0.3, 0xC6 / 255), out(0.3, 0x80 / 255))),
    ],
    ids=["sent", "queued", "refused"],
)
def test_a_tap_sends_and_shows_how_it_went(
    connected: bool, paired: bool, effects: list[Effect], peak_at: float, peak: Rgb
) -> None:
    bench = Bench(connected=connected) if paired else Bench(connected=connected, partners=())

    assert bench.tap(TAP_AT, held=TAP_HELD) == effects
    assert bench.frame(RELEASED) == Rgb(0.0, 0.0, 0.0)
    assert bench.frame(RELEASED + peak_at) == pytest.approx(peak, abs=1e-6)
    assert bench.frame(RELEASED + 2.5) == Rgb(0.0, 0.0, 0.0)
    assert not bench.core.is_animating(RELEASED + 2.5)


def test_feedbacks_differ_enough_to_tell_apart() -> None:
    looks = LookSettings()
    sent, queued, refused = looks.tap_sent, looks.tap_queued, looks.tap_refused
    assert (sent.pulses, sent.level) != (queued.pulses, queued.level)
    assert refused.color is not None
    assert refused.level < sent.level
    assert queued.level < sent.level


def test_a_group_state_that_is_not_yet_known_does_not_stop_a_tap() -> None:
    bench = Bench(partners=None)
    assert bench.tap(TAP_AT) == [SendTouch(color=ORANGE)]


def test_a_queued_result_turns_the_feedback_into_the_queued_look() -> None:
    bench = Bench()
    bench.tap(TAP_AT, held=TAP_HELD)
    bench.send(TouchResult(outcome=TouchOutcome.QUEUED), RELEASED + 0.05)
    # The queued look restarts from the result: its first swell peaks 0.6 s later, at 0.4.
    assert bench.frame(RELEASED + 0.65).r == pytest.approx(out(0.4), abs=1e-6)


def test_a_sent_result_keeps_the_sent_look() -> None:
    bench = Bench()
    bench.tap(TAP_AT, held=TAP_HELD)
    bench.send(TouchResult(outcome=TouchOutcome.SENT), RELEASED + 0.05)
    assert bench.frame(RELEASED + 0.6).r == pytest.approx(1.0)


def test_a_sent_result_after_the_swell_ended_does_not_replay_it() -> None:
    bench = Bench()
    bench.tap(TAP_AT, held=TAP_HELD)
    bench.send(TouchResult(outcome=TouchOutcome.SENT), RELEASED + 2.0)
    assert bench.frame(RELEASED + 2.6) == Rgb(0.0, 0.0, 0.0)


def test_a_result_long_after_the_tap_is_not_shown() -> None:
    bench = Bench()
    bench.tap(TAP_AT)
    bench.send(TouchResult(outcome=TouchOutcome.REFUSED), RELEASED + 60)
    assert bench.frame(RELEASED + 60.3) == Rgb(0.0, 0.0, 0.0)


def test_an_empty_group_right_after_a_tap_shows_not_paired() -> None:
    bench = Bench()
    bench.tap(TAP_AT, held=TAP_HELD)
    bench.send(GroupChanged(members=()), RELEASED + 0.1)
    refused = TapRefusedLook()
    # The refused look: three swells in 1.8 s, the first peaking 0.3 s in, warm white at 0.3.
    assert bench.frame(RELEASED + 0.4) == pytest.approx(
        Rgb(out(refused.level), out(refused.level, 0xC6 / 255), out(refused.level, 0x80 / 255)),
        abs=1e-6,
    )
    assert bench.tap(10.0) == []


# ---- glow ---------------------------------------------------------------------------------------

GLOW_TIMELINE = [
    # (seconds after the glow arrived, expected blue output)
    (0.0, 0.0),
    (0.1, out(0.15625)),  # rising: smoothstep(0.25) = 0.15625 of full, perceived
    (ATTACK, 1.0),  # full
    (ATTACK + BREATH / 2, out(DEFAULT.glow.breath_low)),  # the bottom of a breath
    (ATTACK + BREATH, 1.0),  # back up
    (BREATHING_END, 1.0),  # the fade starts from full
    (BREATHING_END + FADE / 4, out(0.75)),  # gamma-shaped: 0.53, not 0.75
    (BREATHING_END + FADE / 2, out(0.5)),  # 0.22 at the midpoint, not 0.5
    (BREATHING_END + 3 * FADE / 4, out(0.25)),  # 0.047
    (FADE_END, 0.0),  # dark
    (FADE_END + 3600, 0.0),
]


def test_a_glow_breathes_in_the_senders_colour_then_fades_evenly_to_the_eye() -> None:
    bench = Bench()
    bench.glow(0.0, color=BLUE)
    for after, blue in GLOW_TIMELINE:
        frame = bench.frame(after)
        assert frame.b == pytest.approx(blue, abs=1e-6), f"{after} s after the glow"
        assert frame.r == frame.g == 0.0
    assert bench.core.next_change(FADE_END) is None
    assert not bench.core.is_animating(FADE_END)


def test_the_fade_midpoint_is_gamma_shaped_not_linear() -> None:
    bench = Bench()
    bench.glow(0.0)
    midpoint = bench.frame(BREATHING_END + FADE / 2).b
    assert 0.2 < midpoint < 0.24  # a linear PWM fade would be at 0.5 here


def test_the_glow_level_and_brightness_cap_scale_every_frame() -> None:
    looks = LookSettings(max_brightness=0.5, glow=GlowLook(level=0.8))
    bench = Bench(looks=looks)
    bench.glow(0.0, color="#ffffff")
    assert bench.frame(ATTACK) == pytest.approx(Rgb(*[0.5 * out(0.8)] * 3))
    assert max(bench.frame(t).b for t in (0.1, 1.0, 5.0, 30.0, 300.0)) <= 0.5


def test_a_newer_glow_replaces_an_older_one() -> None:
    bench = Bench()
    bench.glow(0.0, color=RED, touch="lamp-b:7:1")
    bench.glow(60.0, color=GREEN, touch="lamp-b:7:2")
    assert bench.frame(60.0 + ATTACK) == Rgb(0.0, 1.0, 0.0)
    # The new glow has its own full timeline: it is still breathing when the first would fade.
    assert bench.frame(60.0 + BREATHING_END) == Rgb(0.0, 1.0, 0.0)


def test_a_burst_of_glows_is_one_glow_in_the_newest_colour() -> None:
    single = Bench()
    single.glow(0.0, color=GREEN)
    burst = Bench()
    colors = [RED, BLUE, GREEN] * 16 + [RED, GREEN]
    for index, color in enumerate(colors):
        # A backlog delivered on reconnect: fifty touches from the last hours, oldest first.
        age = (len(colors) - index) * 60.0
        burst.glow(index * 0.01, color=color, touch=f"lamp-b:7:{index}", age_seconds=age)
    for at in (0.1, 0.3, ATTACK, 2.0, 10.0, BREATHING_END + 60):
        assert burst.frame(at) == single.frame(at), f"{at} s after the burst started"


def test_a_glow_older_than_the_one_showing_is_ignored() -> None:
    bench = Bench()
    bench.glow(0.0, color=GREEN, touch="lamp-b:7:2")
    bench.glow(30.0, color=RED, touch="lamp-b:7:1", age_seconds=120.0)
    assert bench.frame(31.0).r == 0.0
    assert bench.frame(31.0).g > 0.1


def test_a_redelivered_glow_does_not_restart_the_animation() -> None:
    single = Bench()
    single.glow(0.0)
    again = Bench()
    again.glow(0.0, touch="lamp-b:7:1")
    again.glow(10.0, touch="lamp-b:7:1")
    assert again.frame(10.1) == single.frame(10.1)


@pytest.mark.parametrize(
    ("age_hours", "lights"),
    [(0.0, True), (11.9, True), (12.1, False)],
)
def test_a_glow_older_than_the_max_age_is_ignored(age_hours: float, lights: bool) -> None:
    bench = Bench()
    bench.glow(0.0, age_seconds=age_hours * 3600)
    assert (bench.frame(ATTACK).b == 1.0) is lights


def test_a_glow_from_the_wire_becomes_an_event() -> None:
    payload = b'{"touch": "lamp-b:7:3", "from": "lamp-b", "color": "#00FF00", "at": 5}'
    glow = decode_glow("touchlamp/v1/lamp/lamp-a/glow", payload)
    assert GlowReceived.from_message(glow) == GlowReceived(
        touch="lamp-b:7:3", sender="lamp-b", color="#00ff00", at=5, mutual=False
    )
    with pytest.raises(ValueError, match="colour"):
        GlowReceived(touch="lamp-b:7:3", sender="lamp-b", color="green", at=5)


# ---- a glow whose frames come late --------------------------------------------------------------

# The latency benchmark's look (bench/latency.py before issue 19): the whole glow lasts 51 ms.
BRIEF = LookSettings(
    glow=GlowLook(attack_seconds=0.001, breaths=0, fade_seconds=0.05), ambient_level=0.0
)
BRIEF_END = 0.001 + 0.05
DARK = Rgb(0.0, 0.0, 0.0)


def test_a_punctual_driver_draws_a_brief_glow_on_its_own_timeline() -> None:
    bench = Bench(looks=BRIEF)
    bench.glow(0.0)
    assert bench.core.next_change(0.0) == pytest.approx(0.001)  # the peak, when it is due
    bench.send(Tick(), 0.001)
    assert bench.frame(0.001) == Rgb(0.0, 0.0, 1.0)
    wakes = bench.drive(until=1.0)
    assert wakes[-1] == pytest.approx(BRIEF_END)
    assert bench.frame(wakes[-1]) == DARK


def test_a_glow_that_ended_before_the_next_frame_is_drawn_from_its_peak_then_fades() -> None:
    # Issue 19: lamp B's thread paused (a garbage-collection pass) right after the frame that
    # started the glow, for longer than the whole glow; the lamp stayed dark.
    bench = Bench(looks=BRIEF)
    bench.glow(0.0)
    assert bench.frame(0.0) == DARK  # the rise starts from dark
    bench.send(Tick(), 0.2)
    assert bench.frame(0.2) == pytest.approx(Rgb(0.0, 0.0, 1.0))
    assert bench.frame(0.2 + 0.025).b == pytest.approx(out(0.5))  # then the usual fade
    wakes = bench.drive(until=1.0)
    assert wakes[-1] == pytest.approx(0.2 + 0.05)
    assert bench.frame(wakes[-1]) == DARK
    assert bench.core.next_change(wakes[-1]) is None


def test_a_lamp_stalled_longer_than_a_default_glow_shows_it_from_the_peak() -> None:
    bench = Bench()
    bench.glow(0.0)
    bench.send(Tick(), FADE_END + 600.0)
    resumed = FADE_END + 600.0
    assert bench.frame(resumed) == pytest.approx(Rgb(0.0, 0.0, 1.0))
    assert bench.frame(resumed + BREATH / 2).b == pytest.approx(out(DEFAULT.glow.breath_low))


def test_a_glow_caught_mid_way_keeps_its_timeline_and_is_not_shown_again() -> None:
    bench = Bench(looks=BRIEF)
    bench.glow(0.0)
    bench.send(Tick(), 0.026)  # late, but the glow is still fading: shown as it is now
    assert bench.frame(0.026).b == pytest.approx(out(0.5))
    bench.send(Tick(), 0.2)
    assert bench.frame(0.2) == DARK


def test_a_glow_replaced_before_it_was_drawn_is_not_shown_later() -> None:
    # Coalescing still wins: only the newest touch of a burst is drawn, once.
    bench = Bench(looks=BRIEF)
    bench.glow(0.0, color=RED, touch="lamp-b:7:1")
    bench.glow(0.0005, color=GREEN, touch="lamp-b:7:2")
    bench.send(Tick(), 0.2)
    assert bench.frame(0.2) == pytest.approx(Rgb(0.0, 1.0, 0.0))
    bench.drive(until=1.0)
    assert bench.frame(1.0) == DARK


# ---- tap while glowing, mutual ------------------------------------------------------------------


def test_a_tap_while_glowing_answers_and_the_glow_goes_on() -> None:
    bench = Bench()
    untouched = Bench()
    bench.glow(0.0)
    untouched.glow(0.0)
    assert bench.tap(5.0, held=0.1) == [SendTouch(color=ORANGE)]
    during = bench.frame(5.1 + 0.6)
    assert during.r == pytest.approx(1.0)  # your own colour swells over the glow
    assert bench.frame(5.1 + 1.3) == untouched.frame(5.1 + 1.3)


def test_a_mutual_glow_alternates_both_colours_then_fades_in_the_senders() -> None:
    looks = LookSettings()
    turn = looks.together.turn_seconds
    together_end = ATTACK + looks.together.turns * turn
    bench = Bench(color=RED)
    bench.glow(0.0, color=BLUE, mutual=True)
    assert bench.frame(ATTACK) == Rgb(0.0, 0.0, 1.0)  # theirs
    assert bench.frame(ATTACK + turn / 2) == pytest.approx(Rgb(1.0, 0.0, 0.0))  # yours
    assert bench.frame(ATTACK + turn) == pytest.approx(Rgb(0.0, 0.0, 1.0))  # theirs again
    # Halfway between, a soft blend of both (not a hard switch).
    blend = bench.frame(ATTACK + turn / 4)
    assert 0.1 < blend.r < 0.9
    assert 0.1 < blend.b < 0.9
    assert bench.frame(together_end) == pytest.approx(Rgb(0.0, 0.0, 1.0))
    assert bench.frame(together_end + looks.glow.fade_seconds / 2) == pytest.approx(
        Rgb(0.0, 0.0, out(0.5))
    )


# ---- hold to pick a colour ----------------------------------------------------------------------


def test_a_long_hold_cycles_the_hue_and_release_picks_it() -> None:
    looks = LookSettings()
    hold, cycle = looks.hold_seconds, looks.hue_cycle_seconds
    bench = Bench(color=RED)
    assert bench.send(TouchDown(), 0.0) == []
    assert bench.frame(hold / 2) == Rgb(0.0, 0.0, 0.0)
    assert bench.core.next_change(hold / 2) == hold  # wake up when the hold begins
    assert bench.frame(hold) == pytest.approx(Rgb(1.0, 0.0, 0.0))  # starts at your colour
    assert bench.frame(hold + cycle / 6) == pytest.approx(Rgb(1.0, 1.0, 0.0))  # yellow
    assert bench.frame(hold + cycle / 3) == pytest.approx(Rgb(0.0, 1.0, 0.0))  # green

    effects = bench.send(TouchUp(), hold + cycle / 3)

    assert effects == [PersistColor(color=GREEN), AnnounceColor(color=GREEN)]
    assert bench.core.color == GREEN
    assert bench.frame(hold + cycle / 3 + 0.2).g > 0.1  # the new colour swells to confirm
    assert bench.tap(20.0) == [SendTouch(color=GREEN)]


def test_a_press_just_shorter_than_the_hold_is_a_tap() -> None:
    bench = Bench()
    assert bench.tap(0.0, held=DEFAULT.hold_seconds - 0.01) == [SendTouch(color=ORANGE)]


def test_a_release_without_a_press_does_nothing() -> None:
    bench = Bench()
    assert bench.send(TouchUp(), 1.0) == []
    assert bench.frame(1.5) == Rgb(0.0, 0.0, 0.0)


# ---- quiet hours --------------------------------------------------------------------------------

QUIET = QuietHours(enabled=True, start=dt.time(22, 0), end=dt.time(7, 0), timezone="Europe/Berlin")
EVENING = dt.datetime(2026, 3, 10, 21, 0, tzinfo=BERLIN)
HOUR = 3600.0


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        (dt.time(21, 59), False),
        (dt.time(22, 0), True),
        (dt.time(23, 30), True),
        (dt.time(0, 30), True),  # across midnight
        (dt.time(6, 59), True),
        (dt.time(7, 0), False),
        (dt.time(12, 0), False),
    ],
)
def test_quiet_hours_cross_midnight(local: dt.time, quiet: bool) -> None:
    start = dt.datetime.combine(dt.date(2026, 3, 10), local, tzinfo=BERLIN)
    bench = Bench(quiet_hours=QUIET, start=start)
    bench.glow(1.0)
    assert bench.core.quiet is quiet
    assert (bench.frame(1.0 + ATTACK).b > 0.0) is not quiet


def test_quiet_hours_within_one_day() -> None:
    hours = QuietHours(enabled=True, start=dt.time(13, 0), end=dt.time(15, 0))
    bench = Bench(quiet_hours=hours, start=dt.datetime(2026, 3, 10, 14, 0, tzinfo=BERLIN))
    assert bench.core.quiet
    bench.send(Tick(), 1.5 * HOUR)
    assert not bench.core.quiet


def test_a_glow_in_quiet_hours_stays_dark_and_shows_as_missed_when_they_end() -> None:
    bench = Bench(quiet_hours=QUIET, start=EVENING)
    bench.glow(2 * HOUR, color=GREEN, touch="lamp-b:7:1")  # 23:00
    bench.glow(3 * HOUR, color=BLUE, touch="lamp-b:7:2")  # 00:00, the last sender's colour
    for hours in (2, 2.01, 3.01, 5, 9.99):
        assert bench.frame(hours * HOUR) == Rgb(0.0, 0.0, 0.0)

    wakes = bench.drive(until=10 * HOUR + 1.0)

    assert 10 * HOUR in wakes  # the driver was woken exactly at 07:00
    assert wakes[0] == 10 * HOUR  # and not before: a dark lamp in quiet hours sleeps
    missed = DEFAULT.missed
    peak_at = 10 * HOUR + missed.attack_seconds
    assert bench.frame(peak_at) == pytest.approx(Rgb(0.0, 0.0, out(missed.level)))
    assert bench.frame(peak_at).b < 0.15  # soft: far below a fresh glow's 1.0


def test_quiet_hours_follow_daylight_saving_time() -> None:
    # 29 March 2026 in Berlin: 02:00 becomes 03:00, so 23:00 to 07:00 is seven hours.
    start = dt.datetime(2026, 3, 28, 23, 0, tzinfo=BERLIN)
    bench = Bench(quiet_hours=QUIET, start=start)
    assert bench.core.next_change(0.0) == pytest.approx(7 * HOUR)


def test_quiet_hours_keep_the_status_patterns_dark() -> None:
    bench = Bench(quiet_hours=QUIET, start=dt.datetime(2026, 3, 10, 23, 0, tzinfo=BERLIN))
    bench.send(Disconnected(auth_failed=True), 1.0)
    assert max(bench.frame(1.0 + t / 10).r for t in range(30)) == 0.0


# ---- connection, presence -----------------------------------------------------------------------

GRACE = DEFAULT.disconnected_grace_seconds
STATUS = DEFAULT.disconnected


def _peak(bench: Bench, start: float, period: float) -> Rgb:
    frames = [bench.frame(start + period * step / 100) for step in range(101)]
    return max(frames, key=Rgb.max_channel)


def test_a_lamp_that_stays_offline_shows_a_faint_slow_pattern_after_the_grace() -> None:
    bench = Bench(connected=False)
    assert bench.core.next_change(0.0) == GRACE
    assert bench.frame(GRACE - 1) == Rgb(0.0, 0.0, 0.0)
    peak = _peak(bench, GRACE, STATUS.period_seconds)
    assert peak == pytest.approx(Rgb(out(STATUS.level), out(STATUS.level, 0x88 / 255), 0.0))
    # Seen, not a glow: at least 2 % PWM (0.06 used to peak at 0.2 %), well below a glow's 100 %.
    assert 0.02 < peak.r < 0.15
    assert LookSettings().disconnected == STATUS  # the bench's looks are the defaults here
    assert bench.core.is_animating(GRACE + 1)


def test_reconnecting_ends_the_pattern_and_repeated_reports_do_not_restart_the_grace() -> None:
    bench = Bench()
    bench.send(Disconnected(), 10.0)
    bench.send(Disconnected(), 40.0)  # the link retrying
    assert bench.core.next_change(40.0) == 10.0 + GRACE
    assert _peak(bench, 10.0 + GRACE, STATUS.period_seconds).r > 0.0
    bench.send(Connected(), 200.0)
    assert bench.frame(201.0) == Rgb(0.0, 0.0, 0.0)
    assert bench.core.next_change(201.0) is None


def test_the_not_connected_pattern_can_be_turned_off() -> None:
    bench = Bench(connected=False, looks=LookSettings(disconnected=DisconnectedLook(level=0.0)))
    assert bench.core.next_change(0.0) is None
    assert _peak(bench, GRACE, STATUS.period_seconds) == Rgb(0.0, 0.0, 0.0)


def test_bad_credentials_show_a_distinct_pattern_at_once() -> None:
    bench = Bench()
    bench.send(Disconnected(auth_failed=True), 5.0)
    look = DEFAULT.auth_failed
    peak = _peak(bench, 5.0, look.period_seconds)
    assert peak.r == pytest.approx(out(look.level))
    assert peak.g < peak.r / 10  # reddish, unlike your own colour's pattern
    assert look.period_seconds < STATUS.period_seconds


def test_a_glow_shows_over_the_not_connected_pattern() -> None:
    bench = Bench(connected=False)
    bench.glow(GRACE + 1.0)
    assert bench.frame(GRACE + 1.0 + ATTACK) == Rgb(0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("level", "online", "expected"),
    [
        (0.0, True, Rgb(0.0, 0.0, 0.0)),  # off by default
        (0.1, True, Rgb(0.0, 0.0, out(0.1))),  # a faint light in the partner's colour
        (0.1, False, Rgb(0.0, 0.0, 0.0)),  # nobody online
    ],
)
def test_partner_online_ambient(level: float, online: bool, expected: Rgb) -> None:
    partner = Member(id="lamp-b", name="B", color=BLUE, online=online)
    bench = Bench(looks=LookSettings(ambient_level=level), partners=(partner,))
    assert bench.frame(1.0) == pytest.approx(expected)
    assert bench.core.next_change(1.0) is None  # a steady level needs no redraws


# ---- sleeping between frames --------------------------------------------------------------------


def test_an_idle_lamp_has_nothing_to_redraw() -> None:
    bench = Bench()
    assert bench.core.next_change(0.0) is None
    assert not bench.core.is_animating(0.0)
    assert bench.drive(until=24 * HOUR) == []


def test_a_long_fade_wakes_the_driver_rarely_and_ends_dark() -> None:
    bench = Bench()
    wakes = bench.drive(
        until=2 * HOUR,
        events=[
            (0.0, GlowReceived(touch="lamp-b:7:1", sender="lamp-b", color=BLUE, at=epoch_ms(NOON)))
        ],
    )
    fade_wakes = [t for t in wakes if t > BREATHING_END]
    # Breathing redraws at the frame rate; the half-hour fade only per 1/512 of brightness.
    assert len(fade_wakes) <= 520
    assert all(b - a >= 3.0 for a, b in itertools.pairwise(fade_wakes))
    assert wakes[-1] == pytest.approx(FADE_END)
    assert bench.core.frame(wakes[-1]) == Rgb(0.0, 0.0, 0.0)
    assert bench.core.next_change(wakes[-1]) is None


def test_consecutive_fade_frames_differ_by_at_most_the_frame_step() -> None:
    bench = Bench()
    bench.glow(0.0)
    now = BREATHING_END
    perceived = []
    while now < FADE_END:
        perceived.append(bench.frame(now).b ** (1 / GAMMA))
        next_change = bench.core.next_change(now)
        assert next_change is not None
        now = next_change
    steps = [a - b for a, b in itertools.pairwise(perceived)]
    assert max(steps) <= DEFAULT.frame_step + 1e-9
    assert min(steps) > 0.0


# ---- quiet now, missed touches, the last glow ---------------------------------------------------


def test_quiet_now_keeps_glows_dark_counts_them_and_shows_the_missed_glow_when_it_ends() -> None:
    bench = Bench()
    bench.send(SetQuietNow(on=True), 1.0)
    assert bench.core.quiet
    assert bench.core.quiet_now

    bench.glow(2.0, color=GREEN, touch="lamp-b:7:1")
    bench.glow(3.0, color=BLUE, touch="lamp-b:7:2")

    assert bench.frame(3.0 + ATTACK) == Rgb(0.0, 0.0, 0.0)
    assert bench.core.missed_touches == 2
    bench.send(SetQuietNow(on=False), 10.0)
    assert not bench.core.quiet
    missed = DEFAULT.missed
    peak_at = 10.0 + missed.attack_seconds
    assert bench.frame(peak_at) == pytest.approx(Rgb(0.0, 0.0, out(missed.level)))
    assert bench.core.missed_touches == 2  # still missed: nobody touched the lamp


def test_ending_quiet_now_within_quiet_hours_keeps_the_lamp_quiet() -> None:
    bench = Bench(quiet_hours=QUIET, start=dt.datetime(2026, 3, 10, 23, 0, tzinfo=BERLIN))
    bench.send(SetQuietNow(on=True), 1.0)
    bench.send(SetQuietNow(on=False), 2.0)
    assert bench.core.quiet
    assert not bench.core.quiet_now
    bench.glow(3.0)
    assert bench.frame(3.0 + ATTACK) == Rgb(0.0, 0.0, 0.0)
    assert bench.core.missed_touches == 1


def test_a_glow_too_old_counts_as_missed_and_a_shown_one_does_not() -> None:
    bench = Bench()
    bench.glow(1.0, touch="lamp-b:7:1", age_seconds=DEFAULT.glow_max_age_seconds + 60)
    assert bench.core.missed_touches == 1
    bench.glow(2.0, touch="lamp-b:7:2")
    assert bench.core.missed_touches == 1


def test_a_redelivered_missed_glow_counts_once() -> None:
    bench = Bench()
    bench.send(SetQuietNow(on=True), 1.0)
    bench.glow(2.0, touch="lamp-b:7:1")
    bench.glow(3.0, touch="lamp-b:7:1")
    assert bench.core.missed_touches == 1


@pytest.mark.parametrize("held", [0.15, DEFAULT.hold_seconds + 0.5], ids=["tap", "hold"])
def test_touching_the_lamp_resets_the_missed_count(held: float) -> None:
    bench = Bench()
    bench.send(SetQuietNow(on=True), 1.0)
    bench.glow(2.0, touch="lamp-b:7:1")
    assert bench.core.missed_touches == 1
    bench.tap(3.0, held=held)
    assert bench.core.missed_touches == 0


def test_the_last_glow_says_who_what_colour_when_and_whether_it_showed() -> None:
    bench = Bench()
    assert bench.core.last_glow is None
    bench.glow(1.0, color=GREEN, touch="lamp-b:7:1", mutual=True)
    sent = epoch_ms(bench.clock.local_now()) / 1000.0  # the glow's ``at``, in seconds
    assert bench.core.last_glow == GlowNews(
        from_lamp="lamp-b", color=GREEN, mutual=True, shown=True, at=sent
    )
    bench.send(SetQuietNow(on=True), 100.0)
    bench.glow(101.0, color=BLUE, touch="lamp-b:7:2")
    last = bench.core.last_glow
    assert last is not None
    assert (last.color, last.shown) == (BLUE, False)


def test_a_redelivered_glow_that_is_showing_leaves_the_last_glow_alone() -> None:
    bench = Bench()
    bench.glow(1.0, touch="lamp-b:7:1")
    first = bench.core.last_glow
    bench.glow(2.0, touch="lamp-b:7:1")
    assert bench.core.last_glow is first
