"""The lamp's driver loop: one queue of events in, the core's frames to the light, effects out.

One thread — the agent's — runs the lamp: it owns the ``LampCore`` and the MQTT link's paho
client. It waits for the next event while serving the link (``AgentLink.serve``: the broker's
socket, the link's timers); a glow arrives as an event the link emits on this thread, and a
touch leaves through the same thread's socket. Other threads meet it in exactly one place, the
agent's queue: gpiozero's touch callbacks, the owner page and Home Assistant only put an event
there, which wakes the wait (an eventfd, mqtt/wakeup.py). It takes an event, lets the core
handle it, carries out the effects (send a touch, announce and persist a colour) and shows the
new frame.

Between events the loop waits until the core's ``next_change`` (the next frame of an
animation, a timer) or the next event, whichever comes first. A lamp with nothing to animate
waits with no timeout of its own (the link wakes it only for its keep-alive), so an idle lamp
costs next to no CPU: ``wakeups`` counts the loop's iterations so tests can check that (see
tests/device/test_agent_idle.py).

Colour: a long hold picks a colour; the agent stores it in ``state_dir/color`` (it outlives a
restart and wins over ``DeviceSettings.color``) and announces it to the group through the
relay's pairing service. When the group state names this lamp with another colour (a colour
picked while offline), the agent announces its own again.

Outside the loop (the owner page, the Home Assistant bridge): ``status()`` returns an immutable
``LampStatus`` the loop replaces after each event; ``add_listener`` gets ``GlowNews`` and
``StatusChanged`` on the loop's thread (a listener must only hand them to its own queue);
``touch()`` and ``set_quiet_now()`` post events like the touch sensor does.
"""

from __future__ import annotations

import collections
import gc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import TypeAdapter

from touchlamp.config.device import DeviceSettings
from touchlamp.device.clock import Clock
from touchlamp.device.core import (
    AnnounceColor,
    ClaimHeld,
    Effect,
    LampCore,
    PersistColor,
    SendTouch,
)
from touchlamp.device.events import (
    Event,
    GroupChanged,
    SetQuietNow,
    Tick,
    TouchDown,
    TouchOutcome,
    TouchResult,
    TouchUp,
)
from touchlamp.device.hardware import LightOutput, TouchInput
from touchlamp.device.link_api import LinkError, LinkSink, TouchReceipt
from touchlamp.device.outbox import StateFileError
from touchlamp.device.status import (
    GlowNews,
    LampListener,
    LampNews,
    LampStatus,
    MemberStatus,
    StatusChanged,
)
from touchlamp.files import write_atomically
from touchlamp.lifecycle import StopsOnExit
from touchlamp.mqtt.wakeup import Wakeup
from touchlamp.protocol.messages import Color, PairAction, PairRequest

__all__ = [
    "COLOR_FILE",
    "AgentLink",
    "EventQueue",
    "LampAgent",
    "freeze_start_up_objects",
    "load_color",
    "save_color",
]

_log = logging.getLogger(__name__)

_NETWORK_CHECK_SECONDS = 5.0
# The link is served at least this often, events or not: its keep-alive and acks wait meanwhile.
_SERVE_AT_LEAST_SECONDS = 0.05
# Events handled before a frame is drawn, at most (a flood must not hold the frames back).
_EVENTS_PER_FRAME = 16

COLOR_FILE = "color"
"""The lamp's chosen colour (``#rrggbb``) inside its state directory."""

_COLOR_ADAPTER: TypeAdapter[str] = TypeAdapter(Color)


class AgentLink(Protocol):
    """What the agent needs from the MQTT link (``touchlamp.device.link.LampLink``)."""

    def open(self, wakeup: Wakeup) -> None:
        """Start connecting; served by the agent's loop, whose waits end at ``wakeup``."""
        ...

    def serve(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` for the network or a wake-up and handle what came (on the
        agent's thread; the link's events reach ``post`` from here)."""
        ...

    def stop(self, *, timeout: float = 5.0) -> None: ...

    def shown(self) -> None:
        """Everything the link handed to ``post`` so far was handled and drawn: it may record
        the glows as seen and acknowledge them."""
        ...

    def send_touch(self, color: str) -> TouchReceipt:
        """Queue a touch in the outbox and publish it if connected; never waits for the network."""
        ...

    def send_request(self, request: PairRequest, *, expiry_seconds: int = 60) -> bytes:
        """Publish a pairing-service request without waiting; ``LinkError`` when offline."""
        ...


@dataclass(frozen=True, slots=True)
class _Stop:
    """Ends the loop (put by ``stop``)."""


@dataclass(frozen=True, slots=True)
class _Reconfigure:
    """The owner changed the lamp's settings (put by ``reconfigure``)."""

    settings: DeviceSettings


@dataclass(frozen=True, slots=True)
class _ChooseColor:
    """The owner chose a colour on the page or with ``device set`` (put by ``choose_color``)."""

    color: str


@dataclass(frozen=True, slots=True)
class _Claim:
    """A claim waits (``on_held`` is called with a hold's length) or no longer does (None)."""

    on_held: Callable[[float], object] | None


_Item = Event | _Stop | _Reconfigure | _ChooseColor | _Claim


class _Inbox:
    """The agent's queue: events put from any thread; while the loop waits for one, the link
    is served on the loop's thread (``AgentLink.serve``), so a glow goes from the socket to the
    core and a touch from the sensor to the socket without another thread. A ``put`` wakes the
    wait through the shared ``Wakeup`` (mqtt/wakeup.py)."""

    def __init__(self, wakeup: Wakeup) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._wakeup = wakeup
        self.serve: Callable[[float | None], object] = wakeup.wait  # until the link is known
        self._served_at = time.monotonic()

    def put(self, item: _Item, block: bool = True, timeout: float | None = None) -> None:  # noqa: ARG002  queue.SimpleQueue's signature
        self._items.append(item)  # deque.append is atomic: any thread
        self._wakeup.notify()

    def get(self, block: bool = True, timeout: float | None = None) -> _Item:  # noqa: ARG002  queue.SimpleQueue's signature
        now = time.monotonic()
        if self._items and now - self._served_at >= _SERVE_AT_LEAST_SECONDS:
            self._serve(0.0)  # a flood of events (a bouncing sensor) must not starve the link
        deadline = None if timeout is None else now + timeout
        while True:
            self._wakeup.clear()  # before looking: a put after this wakes the next wait
            if self._items:
                return self._items.popleft()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise queue.Empty
            self._serve(left)

    def get_nowait(self) -> _Item:
        """The next item if one is queued, without serving the link; ``queue.Empty`` if none."""
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None

    def _serve(self, timeout: float | None) -> None:
        self.serve(timeout)
        self._served_at = time.monotonic()


class EventQueue(Protocol):
    """``queue.SimpleQueue``'s shape; tests substitute one that simulates the passing of time."""

    def put(self, item: _Item, block: bool = True, timeout: float | None = None) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> _Item:
        """The next item; ``queue.Empty`` when ``timeout`` passes first."""
        ...

    def get_nowait(self) -> _Item:
        """The next item if one is ready now; ``queue.Empty`` if none."""
        ...


def freeze_start_up_objects() -> None:
    """Take the objects made during start-up out of every later garbage collection.

    A full collection walks every tracked object (about 43,000 in a lamp once it is up) while
    holding the interpreter, so the agent's frames wait for it: tens of milliseconds on the
    benchmark machine, longer than a short glow (``python -m bench.gc_pause``, BENCHMARKS.md
    §1). Start-up's objects (modules, settings, clients) live as long as the lamp, so
    ``gc.freeze`` moves them where collections no longer look. Call it once everything has
    started; it is process-wide, so commands call it, not the agent.
    """
    gc.freeze()


def load_color(state_dir: Path) -> str | None:
    """The colour a hold picked on an earlier run, if any (a damaged file is ignored)."""
    path = state_dir / COLOR_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        _log.warning(
            "cannot read the saved colour in %s (%s); using the configured one", path, error
        )
        return None
    try:
        return _COLOR_ADAPTER.validate_python(text)
    except ValueError:
        _log.warning("%s holds %r, not a #rrggbb colour; using the configured one", path, text[:20])
        return None


def save_color(state_dir: Path, color: str) -> None:
    """Store ``color`` atomically (write, fsync, rename), so a power cut leaves old or new."""
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(state_dir / COLOR_FILE, color + "\n", mode=0o644)


class LampAgent(StopsOnExit):
    """Runs one lamp: ``start()`` it, ``stop()`` it from any thread.

    The agent owns its parts: ``touch`` and ``light`` (the hardware ports) and the link that
    ``link(sink)`` builds around the agent's queue (``LampLink.from_settings(settings, sink=…)``).
    ``heartbeat`` is called from the loop at least every ``heartbeat_seconds`` (systemd's
    watchdog: a stuck loop must stop the pings); without it an idle loop never wakes.
    """

    def __init__(
        self,
        *,
        settings: DeviceSettings,
        touch: TouchInput,
        light: LightOutput,
        link: Callable[[LinkSink], AgentLink],
        clock: Clock,
        events: EventQueue | None = None,
        heartbeat: Callable[[], object] | None = None,
        heartbeat_seconds: float | None = None,
        network_up: Callable[[], bool] | None = None,
    ) -> None:
        if (heartbeat is None) != (heartbeat_seconds is None):
            raise ValueError("pass heartbeat and heartbeat_seconds together, or neither")
        self._settings = settings
        self._touch = touch
        self._light = light
        self._clock = clock
        self._wakeup = Wakeup()
        inbox = _Inbox(self._wakeup) if events is None else None
        self._queue: EventQueue = events if events is not None else inbox  # type: ignore[assignment]
        self._link = link(self.post)
        if inbox is not None:
            inbox.serve = self._link.serve
        self._heartbeat = heartbeat
        self._heartbeat_seconds = heartbeat_seconds
        color = load_color(settings.state_dir) or settings.color
        self._core = LampCore(
            lamp_id=settings.lamp_id,
            color=color,
            looks=settings.looks,
            quiet_hours=settings.quiet_hours,
            local_time=clock.local_now,
            now=clock.monotonic(),
        )
        self._thread: threading.Thread | None = None
        self._closed = False
        self._on_held: Callable[[float], object] | None = None
        # Whether the machine has a network at all (device/network.py), asked every few seconds
        # while not connected; None: never asked (simulated lamps, tests).
        self._network_up = network_up
        # Whether the lamp has a colour of its own (picked, or configured): else it takes the
        # one its group shows for it (the operator's), see _check_announced_color.
        self._color_chosen = (
            load_color(settings.state_dir) is not None or "color" in settings.model_fields_set
        )
        # Written by the agent's thread only; other threads read a snapshot (a bool, a str).
        self._online = False
        self._color = color
        self._partners: tuple[str, ...] = ()
        self._listeners: tuple[LampListener, ...] = ()
        self._listeners_lock = threading.Lock()
        self._led = (0.0, 0.0, 0.0)
        self._status = self._snapshot(led=self._led)
        self.wakeups = 0
        """Loop iterations so far (events and timer expiries); an idle lamp does not add any."""

    # ---- any thread ----

    @property
    def lamp_id(self) -> str:
        return self._settings.lamp_id

    @property
    def link(self) -> AgentLink:
        return self._link

    @property
    def online(self) -> bool:
        """Whether the link was connected when the agent last handled an event."""
        return self._online

    @property
    def color(self) -> str:
        """The lamp's own colour (``#rrggbb``) as of the last event handled."""
        return self._color

    @property
    def partners(self) -> tuple[str, ...]:
        """The other lamps of the group, as the last group state named them."""
        return self._partners

    @property
    def settings(self) -> DeviceSettings:
        """The settings the lamp runs with (the owner's latest changes included)."""
        return self._settings

    def status(self) -> LampStatus:
        """The lamp as of the last event the loop handled (an immutable snapshot)."""
        return self._status

    def add_listener(self, listener: LampListener) -> None:
        """Call ``listener(news)`` on the loop's thread after each change (see ``status``).

        It must not block: hand the news to your own queue or thread. An exception in it is
        logged and the lamp goes on.
        """
        with self._listeners_lock:
            self._listeners = (*self._listeners, listener)

    def touch(self) -> None:
        """A touch as if the lamp were tapped (from any thread)."""
        self._queue.put(TouchDown())
        self._queue.put(TouchUp())

    def set_quiet_now(self, on: bool) -> None:
        """Quiet now on or off, on top of quiet hours (from any thread)."""
        self._queue.put(SetQuietNow(on))

    def post(self, event: Event) -> None:
        """Hand an event to the loop. Called from any thread (gpiozero's, paho's, the web's)."""
        self._queue.put(event)

    def reconfigure(self, settings: DeviceSettings) -> None:
        """Run with ``settings``' looks, quiet hours and name from now on (any thread).

        The lamp id, the broker and the pins are the ones it started with.
        """
        self._queue.put(_Reconfigure(settings))

    def await_claim(self, on_held: Callable[[float], object] | None) -> None:
        """While ``on_held`` is set, a hold is not a colour pick: ``on_held(seconds)`` is
        called on the agent's thread instead (must not block). ``None`` ends it (any thread)."""
        self._queue.put(_Claim(on_held))

    def choose_color(self, color: str) -> None:
        """Take ``color`` as the lamp's own, kept and announced as a hold's pick (any thread)."""
        self._queue.put(_ChooseColor(color))

    def start(self) -> None:
        """Open the link (served by the loop), start the loop's thread and the touch input."""
        if self._thread is not None or self._closed:
            raise RuntimeError(f"lamp {self.lamp_id} is already running (or stopped)")
        self._link.open(self._wakeup)
        self._thread = threading.Thread(target=self.run, name=f"lamp-{self.lamp_id}", daemon=True)
        self._thread.start()
        self._touch.start(on_press=self._pressed, on_release=self._released)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the loop, then the link (it publishes ``offline``), then the hardware.

        Any thread but the agent's own. Also closes the parts of an agent never started; a
        second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        thread, self._thread = self._thread, None
        try:
            if thread is not None:
                self._queue.put(_Stop())
                thread.join(timeout)
                if thread.is_alive():
                    raise RuntimeError(
                        f"lamp {self.lamp_id}'s loop did not stop within {timeout:g} s"
                    )
        finally:
            try:
                self._link.stop()  # the loop has ended: the link stops on this thread
            finally:
                self._touch.close()
                self._light.close()
                self._wakeup.close()

    def _pressed(self) -> None:
        self._queue.put(TouchDown())

    def _released(self) -> None:
        self._queue.put(TouchUp())

    # ---- the agent's thread ----

    def run(self) -> None:
        """The loop; returns once ``stop`` asks. Shows the first frame at once.

        Events already queued are all handled before the next frame (at most
        ``_EVENTS_PER_FRAME``): a tap's press and release, queued together, are one frame and
        the touch goes out without waiting for a frame of the press first.
        """
        core, clock = self._core, self._clock
        now = clock.monotonic()
        self._show(now)
        deadline = core.next_change(now)
        beat_at = self._beat(now)
        network_at = self._network_check_due(now)
        while True:
            due = (deadline, beat_at, network_at)
            wake_at = min((t for t in due if t is not None), default=None)
            timeout = None if wake_at is None else max(0.0, wake_at - clock.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = Tick()
            glow_before = core.last_glow
            drained = False  # every event queued was handled (none left behind the cap)
            for handled in itertools.count(1):
                if isinstance(item, _Stop):
                    return
                self.wakeups += 1
                now = clock.monotonic()
                if beat_at is not None and now >= beat_at:
                    beat_at = self._beat(now)
                if network_at is not None and now >= network_at:
                    network_at = self._check_network(now)
                self._handle(item, now)  # not a _Stop: returned above
                if handled >= _EVENTS_PER_FRAME:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    drained = True
                    break
            self._online = core.connected
            self._color = core.color
            # The frame as of the moment it is drawn: a glow that arrived in this batch has
            # begun (a look with next to no rise shows in full at once, not a frame later).
            now = clock.monotonic()
            self._show(now)
            if drained:
                self._link.shown()  # glows it handed over are on the LED: recorded, acked
            self._publish(glow_before)
            deadline = core.next_change(now)
            if network_at is None:
                network_at = self._network_check_due(now)

    def _handle(self, item: Event | _Reconfigure | _ChooseColor | _Claim, now: float) -> None:
        """One event (or an owner's change) into the core; the frame comes after."""
        if isinstance(item, _Reconfigure | _ChooseColor | _Claim):
            self._owner_change(item, now)
            return
        if isinstance(item, GroupChanged):
            self._note_group(item)
        for effect in self._core.handle(item, now):
            self._carry_out(effect, now)

    def _network_check_due(self, now: float) -> float | None:
        """When to look at the network next: only while not connected (a connected lamp's
        loop must not wake for it), and only with a probe (``network_up``)."""
        if self._network_up is None or self._core.connected:
            return None
        return now

    def _check_network(self, now: float) -> float | None:
        """Tell the core whether there is a network at all; the next check's time, if any."""
        if self._network_up is None or self._core.connected:
            return None
        self._core.set_network(up=self._network_up())
        self._show(now)
        return now + _NETWORK_CHECK_SECONDS

    def _owner_change(self, item: _Reconfigure | _ChooseColor | _Claim, now: float) -> None:
        if isinstance(item, _Claim):
            self._on_held = item.on_held
            self._core.set_claim_waiting(item.on_held is not None)
            return
        if isinstance(item, _ChooseColor):
            for effect in self._core.choose_color(item.color, now):
                self._carry_out(effect, now)
            self._color = self._core.color
            return
        renamed = item.settings.name != self._settings.name
        self._settings = item.settings
        self._core.reconfigure(
            looks=item.settings.looks, quiet_hours=item.settings.quiet_hours, now=now
        )
        if renamed:
            self._announce(self._core.color)

    def _beat(self, now: float) -> float | None:
        if self._heartbeat is None or self._heartbeat_seconds is None:
            return None
        self._heartbeat()
        return now + self._heartbeat_seconds

    def _show(self, now: float) -> None:
        frame = self._core.frame(now)
        self._led = (frame.r, frame.g, frame.b)
        self._light.show(frame)

    def _snapshot(self, *, led: tuple[float, float, float]) -> LampStatus:
        core = self._core
        return LampStatus(
            lamp_id=self.lamp_id,
            name=self._settings.display_name,
            color=core.color,
            online=core.connected,
            members=tuple(
                MemberStatus(id=m.id, name=m.name, color=m.color, online=m.online)
                for m in core.partners
            ),
            last_glow=core.last_glow,
            missed_touches=core.missed_touches,
            quiet=core.quiet,
            quiet_now=core.quiet_now,
            led=led,
        )

    def _publish(self, glow_before: GlowNews | None) -> None:
        """Replace the snapshot; tell the listeners about a new glow and a changed status."""
        previous, self._status = self._status, self._snapshot(led=self._led)
        news: list[LampNews] = []
        glow = self._core.last_glow
        if glow is not None and glow is not glow_before:
            news.append(glow)
        if not self._status.same_apart_from_led(previous):
            news.append(StatusChanged(self._status))
        for item in news:
            for listener in self._listeners:
                try:
                    listener(item)
                except Exception:  # noqa: BLE001  a listener's bug must not stop the lamp
                    _log.exception(
                        "lamp %s: a status listener (%r) failed; the lamp goes on",
                        self.lamp_id,
                        listener,
                    )

    def _note_group(self, group: GroupChanged) -> None:
        """What the agent itself keeps of a group state: the partners, this lamp's colour."""
        self._partners = tuple(m.id for m in group.members if m.id != self.lamp_id)
        self._check_announced_color(group)

    def _check_announced_color(self, group: GroupChanged) -> None:
        for member in group.members:
            if member.id != self.lamp_id:
                continue
            if member.color != self._core.color and not self._color_chosen:
                # No colour of its own yet (none picked, none configured): the one the operator
                # gave with `relay lamp add --color` is the lamp's first, not the default's.
                _log.info("lamp %s: taking colour %s from its group", self.lamp_id, member.color)
                self._core.adopt_color(member.color)
                self._keep_color(member.color)
            elif member.color != self._core.color or (
                self._settings.name is not None and member.name != self._settings.name
            ):
                _log.info(
                    "lamp %s: its group shows %s %s, the lamp has %s %s; announcing it",
                    self.lamp_id,
                    member.name,
                    member.color,
                    self._settings.name,
                    self._core.color,
                )
                self._announce(self._core.color)

    def _announce(self, color: str) -> None:
        try:
            self._link.send_request(
                PairRequest(action=PairAction.COLOR, color=color, name=self._settings.name)
            )
        except LinkError as error:
            # Offline: the next group state after reconnecting shows the old colour, and the
            # colour is announced again then (see _check_announced_color).
            _log.info("lamp %s: colour %s not announced yet (%s)", self.lamp_id, color, error)

    def _carry_out(self, effect: Effect, now: float) -> None:
        match effect:
            case SendTouch(color=color):
                try:
                    receipt = self._link.send_touch(color)
                except (StateFileError, LinkError) as error:
                    # The loop must outlive it: the lamp still shows glows. (The link keeps a
                    # touch the disk refuses in memory itself; this is the last resort.)
                    _log.error("lamp %s: the touch was not sent: %s", self.lamp_id, error)
                    outcome = TouchOutcome.REFUSED
                else:
                    outcome = receipt.delivery
                for follow_up in self._core.handle(TouchResult(outcome=outcome), now):
                    self._carry_out(follow_up, now)
            case AnnounceColor(color=color):
                self._announce(color)
            case ClaimHeld(seconds=seconds):
                if self._on_held is not None:
                    self._on_held(seconds)
            case PersistColor(color=color):
                self._keep_color(color)

    def _keep_color(self, color: str) -> None:
        self._color_chosen = True
        try:
            save_color(self._settings.state_dir, color)
        except OSError as error:
            # The lamp keeps the colour until it restarts; nothing else is lost.
            _log.error(
                "lamp %s: cannot save its colour in %s (%s); check the state "
                "directory's permissions",
                self.lamp_id,
                self._settings.state_dir,
                error,
            )
