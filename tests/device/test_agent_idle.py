"""The agent's loop in simulated time: it wakes for events and frames, and never while idle.

The agent waits in its queue's ``get(timeout=…)``. ``SimulatedTime`` is a queue whose waits
pass on a ``ManualClock`` instead of the wall clock: a wait with a timeout moves the clock on by
that timeout, events are delivered when the clock reaches their time, and a wait *without* a
timeout — the agent asking to sleep until something happens — ends the run. So a test sees
every wake-up the loop would make over hours of lamp time, in milliseconds, without sleeping.
The agent runs the real core, the real gpiozero adapters on mock pins and a real (unstarted)
``LampLink`` whose outbox keeps the touches.
"""

from __future__ import annotations

import collections
import datetime as dt
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from touchlamp.config.device import DeviceSettings, MqttSettings
from touchlamp.config.looks import GlowLook, LookSettings
from touchlamp.device.agent import AgentLink, LampAgent, load_color
from touchlamp.device.clock import ManualClock, epoch_ms
from touchlamp.device.events import Connected, Event, GlowReceived, GroupChanged, TouchDown, TouchUp
from touchlamp.device.hardware import mock_pin_factory, open_light_output, open_touch_input
from touchlamp.device.link import LampLink
from touchlamp.device.link_api import LinkSink
from touchlamp.protocol import Glow, GroupMember, GroupState

BERLIN = ZoneInfo("Europe/Berlin")
NOON = dt.datetime(2026, 3, 10, 12, 0, tzinfo=BERLIN)
GREEN = "#00ff00"


class SleptForever(Exception):  # noqa: N818  it is an outcome the tests wait for, not an error
    """The agent asked to wait with no timeout and nothing was left to deliver."""


class SimulatedTime:
    """An ``EventQueue`` on a ``ManualClock``: see the module docstring."""

    def __init__(self, clock: ManualClock, *, horizon: float = 24 * 3600.0) -> None:
        self._clock = clock
        self._horizon = horizon
        self._ready: collections.deque[Any] = collections.deque()
        self._scheduled: list[tuple[float, Event | Event]] = []
        self.timeouts: list[float | None] = []
        self.probe: Callable[[], None] = lambda: None
        """Called at every wait, i.e. right after the agent showed a frame."""

    def at(self, seconds: float, event: Event | Event) -> None:
        """Deliver ``event`` once the clock reads ``seconds`` (from the clock's start)."""
        self._scheduled.append((seconds, event))
        self._scheduled.sort(key=lambda entry: entry[0])

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:  # noqa: ARG002  queue.SimpleQueue's signature
        self._ready.append(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:  # noqa: ARG002  queue.SimpleQueue's signature
        self.timeouts.append(timeout)
        self.probe()
        if self._ready:
            return self._ready.popleft()
        now = self._clock.monotonic()
        due = self._scheduled[0][0] if self._scheduled else None
        if due is not None and (timeout is None or due <= now + timeout):
            self._clock.advance_to(max(now, due))
            return self._scheduled.pop(0)[1]
        if timeout is None:
            raise SleptForever
        if now + timeout > self._horizon:
            raise AssertionError(f"the lamp was still waking up after {self._horizon:g} s")
        self._clock.advance(timeout)
        raise queue.Empty

    def get_nowait(self) -> Any:
        """What is ready now (an item put, an event due): no wait, so no probe either."""
        if self._ready:
            return self._ready.popleft()
        if self._scheduled and self._scheduled[0][0] <= self._clock.monotonic():
            return self._scheduled.pop(0)[1]
        raise queue.Empty


class Lamp:
    """An agent on mock pins with its simulated time, built the way ``device run`` builds one."""

    def __init__(
        self, tmp_path: Path, *, looks: LookSettings | None = None, **agent_options: Any
    ) -> None:
        self.clock = ManualClock(start=NOON)
        self.time = SimulatedTime(self.clock)
        self.settings = DeviceSettings(
            lamp_id="lamp-a",
            color="#ff8800",
            state_dir=tmp_path / "lamp-a",
            mqtt=MqttSettings(host="127.0.0.1", port=1, password=SecretStr("p" * 22)),
            # No partner-online light (on by default): these tests look for dark between events.
            looks=looks or LookSettings(ambient_level=0.0),
        )
        self.pins = mock_pin_factory()
        hardware = self.settings.hardware
        self.timeline: list[tuple[float, tuple[float, float, float]]] = []
        self.time.probe = lambda: self.timeline.append((self.clock.monotonic(), self.led()))
        links: list[LampLink] = []

        def link(sink: LinkSink) -> AgentLink:
            links.append(LampLink.from_settings(self.settings, sink=sink, clock=self.clock))
            return links[-1]

        self.agent = LampAgent(
            settings=self.settings,
            touch=open_touch_input(hardware, pin_factory=self.pins),
            light=open_light_output(hardware, pin_factory=self.pins),
            link=link,
            clock=self.clock,
            events=self.time,
            **agent_options,
        )
        self.link = links[0]

    def led(self) -> tuple[float, float, float]:
        hardware = self.settings.hardware
        red, green, blue = (
            float(self.pins.pin(pin).state)
            for pin in (hardware.red_pin, hardware.green_pin, hardware.blue_pin)
        )
        return red, green, blue

    def shown_at(self, seconds: float) -> tuple[float, float, float]:
        """What the pins showed at ``seconds`` (the last frame drawn at or before it)."""
        shown = [led for at, led in self.timeline if at <= seconds]
        assert shown, f"no frame drawn by {seconds} s"
        return shown[-1]

    def frames_between(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [led for at, led in self.timeline if start <= at <= end]

    def run_until_asleep(self) -> None:
        with pytest.raises(SleptForever):
            self.agent.run()

    def close(self) -> None:
        self.agent.stop()


@pytest.fixture
def lamp(tmp_path: Path) -> Iterator[Lamp]:
    made = Lamp(tmp_path)
    yield made
    made.close()


def _paired() -> GroupChanged:
    members = [
        GroupMember(id="lamp-a", name="Kitchen", color="#ff8800", online=True),
        GroupMember(id="lamp-b", name="Grandma", color=GREEN, online=True),
    ]
    return GroupChanged.from_message(GroupState(group="g-1", members=members))


def _glow(clock: ManualClock) -> GlowReceived:
    glow = Glow(touch="lamp-b:1:1", sender="lamp-b", color=GREEN, at=epoch_ms(clock.local_now()))
    return GlowReceived.from_message(glow)


def test_an_idle_connected_lamp_sleeps_until_an_event(lamp: Lamp) -> None:
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.1, _paired())

    lamp.run_until_asleep()

    assert lamp.agent.wakeups == 2  # the two events, nothing else
    assert lamp.time.timeouts[-1] is None
    assert lamp.led() == (0.0, 0.0, 0.0)


def test_a_day_of_idling_after_a_glow_costs_no_wakeups(lamp: Lamp) -> None:
    """A glow animates (breathing at the frame rate, then a 30-minute fade drawn only when its
    brightness moves by a step), then the lamp sleeps with no timeout: zero wake-ups from then on,
    however long it stays idle."""
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.1, _paired())
    lamp.time.at(10.0, _glow(lamp.clock))

    lamp.run_until_asleep()

    looks = lamp.settings.looks
    glow_seconds = (
        looks.glow.attack_seconds
        + looks.glow.breaths * looks.glow.breath_seconds
        + looks.glow.fade_seconds
    )
    assert lamp.clock.monotonic() == pytest.approx(10.0 + glow_seconds, abs=1.0)
    assert lamp.led() == (0.0, 0.0, 0.0)
    assert lamp.time.timeouts[-1] is None
    # At most the frame rate while breathing, plus one frame per 1/512 of fading brightness.
    breathing = looks.glow.attack_seconds + looks.glow.breaths * looks.glow.breath_seconds
    fade_frames = 1.0 / looks.frame_step
    assert lamp.agent.wakeups <= 3 + breathing * looks.frame_rate + fade_frames + 10
    # The fade itself is drawn in steps, not at the frame rate: waits of many seconds.
    assert max(t for t in lamp.time.timeouts if t is not None) > 2.0


def test_a_glow_lights_the_pins_in_the_senders_colour(lamp: Lamp) -> None:
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.1, _paired())
    lamp.time.at(1.0, _glow(lamp.clock))

    lamp.run_until_asleep()

    peak = 1.0 + lamp.settings.looks.glow.attack_seconds
    red, green, blue = lamp.shown_at(peak)
    assert green == pytest.approx(1.0, abs=0.02)
    assert (red, blue) == (0.0, 0.0)
    assert max(lamp.shown_at(peak + 600.0)) < green  # fading


def test_the_first_frame_after_a_glow_is_drawn_as_of_when_it_is_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handling the glow takes time (here 0.5 ms, a real lamp's order of magnitude): the frame
    after it shows the glow as it is by then. With next to no rise that is in full, at once."""
    looks = LookSettings(
        ambient_level=0.0,
        glow=GlowLook(attack_seconds=1e-6, breaths=1, breath_seconds=0.1, breath_low=1.0),
    )
    lamp = Lamp(tmp_path, looks=looks)
    handle = lamp.agent._core.handle

    def handling(event: Event, now: float) -> Any:
        effects = handle(event, now)
        lamp.clock.advance(0.0005)
        return effects

    monkeypatch.setattr(lamp.agent._core, "handle", handling)
    frames: list[tuple[float, float, float]] = []
    show = lamp.agent._light.show

    def showing(frame: Any) -> None:
        show(frame)
        frames.append(lamp.led())

    monkeypatch.setattr(lamp.agent._light, "show", showing)
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.1, _paired())
    lamp.time.at(1.0, _glow(lamp.clock))
    try:
        lamp.time.probe = lambda: None
        with pytest.raises(SleptForever):
            lamp.agent.run()
    finally:
        lamp.close()

    dark_before_glow = 3  # the first frame, then one after each of the two events
    assert frames[dark_before_glow - 1] == (0.0, 0.0, 0.0)
    assert frames[dark_before_glow][1] == pytest.approx(1.0, abs=0.02)  # green, in full


def test_a_tap_is_kept_in_the_outbox_and_shown_in_the_lamps_colour(lamp: Lamp) -> None:
    """The link reports the touch queued (it has no connection): the "queued" feedback shows."""
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.0, _paired())
    lamp.time.at(1.0, TouchDown())
    lamp.time.at(1.1, TouchUp())

    lamp.run_until_asleep()

    assert lamp.link.outbox_stats().queued == 1
    # Offline: the "queued" feedback, two dim swells of the lamp's own orange.
    red, green, blue = max(lamp.frames_between(1.1, 5.0), key=max)
    assert red > 0.0
    assert green == pytest.approx(red * (0x88 / 0xFF) ** 2.2, rel=0.05)
    assert blue == 0.0
    assert lamp.led() == (0.0, 0.0, 0.0)


def test_a_press_and_release_queued_together_send_the_touch_before_any_frame(
    lamp: Lamp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tap whose press and release wait in the queue together (a quick tap, a busy lamp)
    is one frame: the touch goes out first, not after a frame of the press alone."""
    order: list[str] = []
    send_touch = lamp.link.send_touch

    def sending(color: str) -> Any:
        order.append("touch")
        return send_touch(color)

    monkeypatch.setattr(lamp.link, "send_touch", sending)
    shows = lamp.agent._light.show

    def showing(frame: Any) -> None:
        order.append("frame")
        shows(frame)

    monkeypatch.setattr(lamp.agent._light, "show", showing)
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.0, _paired())
    lamp.time.at(1.0, TouchDown())
    lamp.time.at(1.0, TouchUp())

    lamp.run_until_asleep()

    frames_before = order[: order.index("touch")]
    # The first frame, then the one after the two events at 0.0: none for the press alone.
    assert frames_before == ["frame", "frame"]
    assert lamp.link.outbox_stats().queued == 1


def test_a_hold_picks_a_colour_that_outlives_a_restart(lamp: Lamp, tmp_path: Path) -> None:
    hold = lamp.settings.looks.hold_seconds
    cycle = lamp.settings.looks.hue_cycle_seconds
    lamp.time.at(0.0, Connected(session_present=False))
    lamp.time.at(0.0, _paired())
    lamp.time.at(1.0, TouchDown())
    # Orange's hue (0.089) plus a third of a cycle: green-ish.
    lamp.time.at(1.0 + hold + cycle / 3, TouchUp())

    lamp.run_until_asleep()

    saved = load_color(lamp.settings.state_dir)
    assert saved is not None
    assert saved != "#ff8800"
    assert lamp.agent.color == saved
    lamp.close()
    again = Lamp(tmp_path)
    try:
        assert again.agent.color == saved
    finally:
        again.close()


def test_with_a_watchdog_the_idle_loop_wakes_only_for_its_heartbeat(tmp_path: Path) -> None:
    beats: list[float] = []
    clock_of: list[ManualClock] = []

    def heartbeat() -> None:
        beats.append(clock_of[0].monotonic())
        if len(beats) == 5:
            raise SleptForever  # enough: end the run

    lamp = Lamp(tmp_path, heartbeat=heartbeat, heartbeat_seconds=15.0)
    clock_of.append(lamp.clock)
    try:
        lamp.time.at(0.0, Connected(session_present=False))
        lamp.time.at(0.1, _paired())

        lamp.run_until_asleep()

        assert beats == pytest.approx([0.0, 15.0, 30.0, 45.0, 60.0])
        assert lamp.agent.wakeups == 2 + 4  # the two events, four heartbeats
    finally:
        lamp.close()
