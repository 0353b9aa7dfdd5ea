"""A lamp with no network at all (a gift in a home whose Wi-Fi it does not know) shows its own
look, distinct from "the broker is away": device/network.py reads the kernel's route tables, and
the core shows ``looks.no_network`` while not connected and without a route out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from touchlamp.config.looks import LookSettings, QuietHours
from touchlamp.device.clock import ManualClock
from touchlamp.device.core import LampCore
from touchlamp.device.looks import Rgb, to_output
from touchlamp.device.network import has_default_route

ORANGE = "#ff8800"
LOOKS = LookSettings(ambient_level=0.0)
GRACE = LOOKS.disconnected_grace_seconds

V4_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
V4_DEFAULT = "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
V4_LAN = "wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n"
# What a Pi serving comitup's hotspot has: its own subnet, no way out.
V4_HOTSPOT = "wlan0\t0029000A\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n"
V6_UNREACHABLE = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)
V6_DEFAULT = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fe800000000000000000000000000001 00000400 00000003 00000000 00000003    wlan0\n"
)


@pytest.mark.parametrize(
    ("v4", "v6", "expected"),
    [
        (V4_HEADER + V4_DEFAULT + V4_LAN, "", True),
        (V4_HEADER + V4_HOTSPOT, V6_UNREACHABLE, False),
        (V4_HEADER, "", False),
        (V4_HEADER + V4_LAN, V6_DEFAULT, True),  # IPv6 only is a network too
        (V4_HEADER + V4_DEFAULT.replace("0003", "0002"), "", False),  # a route that is down
    ],
)
def test_a_default_route_is_what_having_a_network_means(
    tmp_path: Path, v4: str, v6: str, expected: bool
) -> None:
    (tmp_path / "route").write_text(v4)
    (tmp_path / "ipv6_route").write_text(v6)
    assert has_default_route(tmp_path / "route", tmp_path / "ipv6_route") is expected


def test_without_the_tables_the_machine_counts_as_having_a_network(tmp_path: Path) -> None:
    assert has_default_route(tmp_path / "none", tmp_path / "none6")


def test_this_machine_reads_its_own_tables() -> None:
    assert isinstance(has_default_route(), bool)


def _offline_core() -> LampCore:
    clock = ManualClock(start=dt.datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")))
    return LampCore(
        lamp_id="lamp-a",
        color=ORANGE,
        looks=LOOKS,
        quiet_hours=QuietHours(),
        local_time=clock.local_now,
        now=0.0,
    )


def _peak(core: LampCore, start: float, period: float) -> Rgb:
    frames = [core.frame(start + period * step / 100) for step in range(101)]
    return max(frames, key=Rgb.max_channel)


def test_no_network_is_a_cool_white_quicker_swell_not_the_lamps_colour() -> None:
    core = _offline_core()
    core.set_network(up=False)
    look = LOOKS.no_network
    assert core.frame(GRACE - 1) == Rgb(0.0, 0.0, 0.0)  # the same grace as "not connected"
    peak = _peak(core, GRACE, look.period_seconds)
    assert look.color is not None
    expected = to_output(Rgb.from_hex(look.color).scaled(look.level), gamma=LOOKS.gamma)
    assert peak == pytest.approx(expected, abs=1e-3)
    assert peak.b > peak.r  # cool white, whatever the lamp's own (orange) colour
    assert 0.02 < peak.max_channel() < 0.15  # seen, never taken for a glow
    assert look.period_seconds < LOOKS.disconnected.period_seconds

    core.set_network(up=True)  # the Wi-Fi is back, the broker not yet: the usual swell
    peak = _peak(core, GRACE, LOOKS.disconnected.period_seconds)
    assert peak.r > peak.b
    assert peak == pytest.approx(
        to_output(Rgb.from_hex(ORANGE).scaled(LOOKS.disconnected.level), gamma=LOOKS.gamma),
        abs=1e-3,
    )
