"""The default looks a person must be able to see (issue 13): status swells peak well above the
old invisible PWM 0.002, and none hides behind the partner-online light, which is on by default
and steady while the lamp is connected."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from touchlamp.config.looks import LookSettings, QuietHours
from touchlamp.device.clock import ManualClock
from touchlamp.device.core import LampCore
from touchlamp.device.events import Connected, GroupChanged, Member, StateTrouble
from touchlamp.device.looks import Rgb

AMBER = "#ff8c1a"
BLUE = "#3c78ff"


def _paired_core() -> LampCore:
    clock = ManualClock(start=dt.datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC")))
    core = LampCore(
        lamp_id="lamp-a",
        color=AMBER,
        looks=LookSettings(),
        quiet_hours=QuietHours(),
        local_time=clock.local_now,
        now=0.0,
    )
    core.handle(Connected(), 0.0)
    members = (
        Member(id="lamp-a", name="A", color=AMBER, online=True),
        Member(id="lamp-b", name="B", color=BLUE, online=True),
    )
    core.handle(GroupChanged(members=members), 0.0)
    return core


def test_the_partner_online_light_is_on_by_default_and_faint() -> None:
    shown = _paired_core().frame(5.0)
    assert shown.b > shown.r  # the partner's blue
    assert 0.005 < shown.max_channel() < 0.03  # seen in a dim room, never taken for a glow


def test_a_state_trouble_swell_shows_above_the_partner_light() -> None:
    core = _paired_core()
    core.handle(StateTrouble(failing=True), 1.0)
    period = LookSettings().state_trouble.period_seconds
    frames = [core.frame(1.0 + period * step / 50) for step in range(51)]
    trouble = [f for f in frames if f.b == 0 and f.r > f.g > 0]  # #ffc000, not blue
    assert trouble, "the trouble swell never shows over the partner-online light"
    assert max(trouble, key=Rgb.max_channel).r > 0.05
