"""Lamps for the fault scenarios, and the "nothing lost" ledger they keep.

A ``FaultLamp`` is a real ``LampLink`` (outbox, seen-glow de-duplication, jittered reconnects)
and, unless ``core=False``, a real ``LampAgent`` with its ``LampCore`` on gpiozero's mock pins.
Everything the link hands towards the core passes through a ``CoreInbox``, which records it:
``received()`` is the list of glows *the lamp core was given*, in arrival order — with an agent,
exactly the items on the agent's queue; without one (50 lamps in a reconnect storm), exactly what
the link's sink got, which is what an agent would have queued.

Touches are made with ``touch()``, which does what the agent does for a tap (``send_touch`` on
the link, from any thread), so a scenario can make thousands quickly; every receipt is kept, and
``touch_ids()`` names what was sent in order. ``assert_delivered`` is the rule of the suite:
each (lamp, stream, seq) a lamp sent reached each peer's core exactly once, in order per sender
(unless told not to check order), and nothing else from that sender arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.support.waiting import WAIT
from touchlamp.config.device import DeviceSettings, MqttSettings
from touchlamp.config.looks import LookSettings
from touchlamp.device.agent import AgentLink, LampAgent
from touchlamp.device.clock import Clock, SystemClock
from touchlamp.device.events import Connected, Event, GlowReceived, StateTrouble
from touchlamp.device.hardware import mock_pin_factory, open_light_output, open_touch_input
from touchlamp.device.link import LampLink
from touchlamp.device.link_api import LinkSink
from touchlamp.device.looks import Rgb
from touchlamp.protocol import Touch, touch_id

__all__ = [
    "CoreInbox",
    "FaultLamp",
    "Frame",
    "LampPlan",
    "assert_delivered",
]


@dataclass(frozen=True, slots=True)
class Frame:
    at: float  # monotonic
    rgb: Rgb


class CoreInbox:
    """What the lamp core is given by the link: its events on their way to the agent (or, for
    a lamp without a core, the link's sink). Records glows and connections with the monotonic
    time they arrived; called from any thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.glows: list[tuple[float, GlowReceived]] = []
        self.connects: list[tuple[float, Connected]] = []
        self.troubles: list[StateTrouble] = []

    def __call__(self, event: Event) -> None:
        self._record(event)

    def _record(self, item: object) -> None:
        now = time.monotonic()
        with self._changed:
            if isinstance(item, GlowReceived):
                self.glows.append((now, item))
            elif isinstance(item, Connected):
                self.connects.append((now, item))
            elif isinstance(item, StateTrouble):
                self.troubles.append(item)
            self._changed.notify_all()

    def wait(self, check: Callable[[CoreInbox], bool], what: str, *, timeout: float = WAIT) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: check(self), timeout=timeout):
                raise AssertionError(f"not within {timeout:g} s: {what}")


class RecordingLight:
    """The lamp's real light output (on mock pins), recording every frame it is shown."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.frames: list[Frame] = []

    def show(self, rgb: Rgb) -> None:
        self._inner.show(rgb)
        with self._lock:
            self.frames.append(Frame(time.monotonic(), rgb))

    def close(self) -> None:
        self._inner.close()

    def snapshot(self) -> list[Frame]:
        with self._lock:
            return list(self.frames)


@dataclass(frozen=True, slots=True, kw_only=True)
class LampPlan:
    """Where a lamp connects and how it behaves; the world fills it in."""

    lamp_id: str
    password: str
    color: str
    host: str
    port: int
    topic_root: str
    state_dir: Path
    keepalive_seconds: int = 60
    reconnect_min_seconds: float = 0.1
    reconnect_max_seconds: float = 1.0
    connect_timeout_seconds: float = 10.0
    outbox_max_entries: int = 1000
    clock: Clock | None = None
    # A tap pressed and released far apart on a loaded machine must not become a hold.
    looks: LookSettings = field(default_factory=lambda: LookSettings(hold_seconds=5.0))


class FaultLamp:
    """One lamp in a scenario; ``start()`` it (and ``stop()`` it, or the world does)."""

    def __init__(self, plan: LampPlan, *, core: bool = True) -> None:
        self.plan = plan
        self.lamp_id = plan.lamp_id
        self.color = plan.color
        self.inbox = CoreInbox()
        self.clock: Clock = plan.clock or SystemClock()
        self.receipts: list[Touch] = []
        self.sent_at: dict[str, float] = {}  # touch id → monotonic time it was made
        self._receipts_lock = threading.Lock()
        self.light: RecordingLight | None = None
        self.agent: LampAgent | None = None
        self._started = False
        if core:
            self._make_agent()
        else:
            self.link = self._make_link(self.inbox)

    def _make_link(self, sink: LinkSink) -> LampLink:
        plan = self.plan
        return LampLink(
            lamp_id=plan.lamp_id,
            password=plan.password,
            sink=sink,
            state_dir=plan.state_dir,
            host=plan.host,
            port=plan.port,
            topic_root=plan.topic_root,
            keepalive_seconds=plan.keepalive_seconds,
            reconnect_min_seconds=plan.reconnect_min_seconds,
            reconnect_max_seconds=plan.reconnect_max_seconds,
            connect_timeout_seconds=plan.connect_timeout_seconds,
            outbox_max_entries=plan.outbox_max_entries,
            clock=self.clock,
        )

    def _make_agent(self) -> None:
        plan = self.plan
        settings = DeviceSettings(
            lamp_id=plan.lamp_id,
            color=plan.color,
            state_dir=plan.state_dir,
            looks=plan.looks,
            # Not used to connect (the link below is built from the plan); only for the agent.
            mqtt=MqttSettings(host=plan.host, port=plan.port, password=SecretStr(plan.password)),
        )
        pins = mock_pin_factory()
        self.light = RecordingLight(open_light_output(settings.hardware, pin_factory=pins))
        links: list[LampLink] = []

        def link(sink: LinkSink) -> AgentLink:
            def recorded(event: Event) -> None:
                self.inbox(event)
                sink(event)

            links.append(self._make_link(recorded))
            return links[-1]

        self.agent = LampAgent(
            settings=settings,
            touch=open_touch_input(settings.hardware, pin_factory=pins),
            light=self.light,
            link=link,
            clock=self.clock,
        )
        self.link = links[0]

    # ---- running ----

    def start(self) -> None:
        self._started = True
        if self.agent is not None:
            self.agent.start()
        else:
            self.link.start()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.agent is not None:
            self.agent.stop()
        else:
            self.link.stop()

    def restart(self) -> None:
        """A new process on the same state directory (same outbox, same seen glows)."""
        self.stop()
        if self.agent is not None:
            self._make_agent()
        else:
            self.link = self._make_link(self.inbox)
        self.start()

    def wait_connected(self, count: int = 1, *, timeout: float = WAIT) -> None:
        self.inbox.wait(
            lambda inbox: len(inbox.connects) >= count,
            f"{self.lamp_id} connected ({count} time(s))",
            timeout=timeout,
        )

    # ---- touching and receiving ----

    def touch(self) -> str:
        """Send a touch as a tap would; returns its id (``lamp:stream:seq``)."""
        made = time.monotonic()
        receipt = self.link.send_touch(self.color)
        made_id = touch_id(self.lamp_id, receipt.touch.stream, receipt.touch.seq)
        with self._receipts_lock:
            self.receipts.append(receipt.touch)
            self.sent_at[made_id] = made
        return made_id

    def touch_ids(self) -> list[str]:
        with self._receipts_lock:
            return [touch_id(self.lamp_id, t.stream, t.seq) for t in self.receipts]

    def received(self, *, sender: str | None = None) -> list[str]:
        """Touch ids of the glows the core was given, in arrival order."""
        with self.inbox._changed:
            glows = [event for _at, event in self.inbox.glows]
        return [g.touch for g in glows if sender is None or g.sender == sender]

    def arrivals(self) -> dict[str, float]:
        """Touch id → monotonic time its glow reached the core (the first time)."""
        with self.inbox._changed:
            return {event.touch: at for at, event in reversed(self.inbox.glows)}

    def wait_received(self, count: int, *, sender: str, timeout: float = WAIT) -> None:
        self.inbox.wait(
            lambda inbox: sum(1 for _, e in inbox.glows if e.sender == sender) >= count,
            f"{self.lamp_id}'s core given {count} glow(s) from {sender} "
            f"(has {len(self.received(sender=sender))})",
            timeout=timeout,
        )

    # ---- the light ----

    def frames(self) -> list[Frame]:
        assert self.light is not None, f"{self.lamp_id} has no core (core=False)"
        return self.light.snapshot()

    def led(self) -> Rgb:
        frames = self.frames()
        return frames[-1].rgb if frames else Rgb(0.0, 0.0, 0.0)


def assert_delivered(
    sender: FaultLamp | str,
    receivers: Iterable[FaultLamp],
    *,
    expected: list[str] | None = None,
    ordered: bool = True,
    timeout: float = WAIT,
) -> None:
    """The rule: every touch ``sender`` (a lamp, or a lamp id with ``expected``) sent reached
    each receiver's core
    exactly once — in the order sent unless ``ordered=False`` — and nothing else from it did.

    Waits (event-driven) until each receiver has been given as many glows from ``sender`` as
    expected, then checks; a duplicate or a stranger shows up as a mismatch.
    """
    if isinstance(sender, str):
        assert expected is not None, "name the expected touch ids of a sender given by id"
        sender_id, ids = sender, expected
    else:
        sender_id, ids = sender.lamp_id, sender.touch_ids() if expected is None else expected
    for receiver in receivers:
        receiver.wait_received(len(ids), sender=sender_id, timeout=timeout)
        got = receiver.received(sender=sender_id)
        duplicates = sorted({i for i in got if got.count(i) > 1})
        assert not duplicates, f"{receiver.lamp_id} was given these twice: {duplicates[:10]}"
        missing = [i for i in ids if i not in got]
        extra = [i for i in got if i not in ids]
        assert not missing, f"{receiver.lamp_id} never got {len(missing)}: {missing[:10]}"
        assert not extra, f"{receiver.lamp_id} got touches never sent: {extra[:10]}"
        if ordered:
            assert got == ids, f"{receiver.lamp_id} got {sender_id}'s touches out of order: {got}"
