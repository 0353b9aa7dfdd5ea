"""Benchmark — touch → light with Home Assistant connected, and with its broker black-holed.

Three pairs of simulated lamps (the real agent, core, link on mock pins, as in the latency
benchmark) share one broker and one relay:

- ``plain`` — no Home Assistant: the baseline;
- ``home`` — both lamps also connected to a home broker (a plain Mosquitto this benchmark
  starts), publishing their Home Assistant discovery, states and events there;
- ``black-holed`` — both lamps' home broker is a socket that accepts the connection and never
  answers (the bridge gives up after its connect timeout and tries again, again and again).

Touches go round-robin, one per pair in turn, so the three see the same moments of a shared,
noisy machine. The clock starts before the sender's touch pin goes high and stops at the first
frame on the receiver's pins in the sender's colour (``bench.latency.shows_color``), on the
receiver's own thread. The glow look is shortened (1 ms rise, no breaths, 200 ms fade). Target: each
Home Assistant case's p99 within 1.5 x the plain pair's p99 (the home broker never waits in
the touch's way, see device/homeassistant.py).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from bench.context import BenchContext
from bench.latency import shows_color
from bench.results import Measure, Result
from bench.site import BenchSite, free_port
from bench.stats import summarize
from touchlamp.broker.parent_watch import ParentWatch
from touchlamp.config.device import DeviceSettings, HomeAssistantSettings, MqttSettings
from touchlamp.config.looks import GlowLook, LookSettings
from touchlamp.device.sim import SimulatedLamp

__all__ = ["run"]

_WAIT = 10.0
_WARM_UP = 3
# A 200 ms fade, not the latency benchmark's 50 ms: six lamps share this process, and a pause
# of the receiver's thread longer than the whole glow would let it end undrawn (FINDINGS).
# No coalescing: each touch is a glow of its own (a touch within 2 s of a glow still fading would
# otherwise only rename the dying glow, and show nothing: FINDINGS, "stalls at touch 343").
_LOOK = LookSettings(
    glow=GlowLook(attack_seconds=0.001, breaths=0, fade_seconds=0.2),
    coalesce_seconds=0.0,
    ambient_level=0.0,  # no partner-online light (on by default): dark between glows
)
_CASES = ("plain", "home", "black-holed")
_COLORS = {"plain": "#ff3300", "home": "#33ff00", "black-holed": "#0033ff"}


def run(context: BenchContext) -> list[Result]:
    touches = context.pick(full=300, quick=40, tiny=3)
    lamps = [f"{case[:5]}-{side}" for case in _CASES for side in ("a", "b")]
    with (
        BenchSite(context.directory, save_every_change=context.save_every_change) as site,
        _home_broker(context.directory / "home-broker") as home_port,
        _black_hole() as hole_port,
    ):
        site.add_lamps(lamps)
        site.pair([[f"{case[:5]}-a", f"{case[:5]}-b"] for case in _CASES])
        homes = {
            "plain": None,
            "home": _home(home_port),
            "black-holed": _home(hole_port),
        }
        with site.relays("relay-1", rate_limited=False):
            samples, bridges = _measure(site, homes, touches=touches)
    plain = summarize(samples["plain"])
    results = []
    for case in ("home", "black-holed"):
        ours = summarize(samples[case])
        context.say(
            f"  {case}: p50 {ours.p50 * 1000:.2f} ms, p99 {ours.p99 * 1000:.2f} ms "
            f"(plain: p50 {plain.p50 * 1000:.2f} ms, p99 {plain.p99 * 1000:.2f} ms)"
        )
        results.append(
            Result(
                bench="homeassistant",
                figure=Measure(f"{case} touch→light p99", ours.p99 * 1000, "ms"),
                baseline=Measure("no Home Assistant p99", plain.p99 * 1000, "ms"),
                target="≤ 1.5 x no Home Assistant",
                met=ours.p99 <= 1.5 * plain.p99,
                details={
                    "touch_to_light": ours.as_ms(),
                    "plain_touch_to_light": plain.as_ms(),
                    "home_broker_connections": bridges[case],
                    "glow_look": "attack 1 ms, no breaths, fade 200 ms",
                },
            )
        )
    return results


def _home(port: int) -> HomeAssistantSettings:
    return HomeAssistantSettings(
        host="127.0.0.1",
        port=port,
        connect_timeout_seconds=1.0,
        reconnect_min_seconds=0.1,
        reconnect_max_seconds=0.5,
        min_touch_interval_seconds=0.0,
    )


def _settings(
    site: BenchSite, lamp_id: str, color: str, home: HomeAssistantSettings | None
) -> DeviceSettings:
    return DeviceSettings(
        lamp_id=lamp_id,
        color=color,
        state_dir=site.directory / lamp_id,
        looks=_LOOK,
        mqtt=MqttSettings(
            host=site.broker.host,
            port=site.broker.port,
            password=SecretStr(site.passwords[lamp_id]),
            topic_root=site.topics.root,
            reconnect_min_seconds=0.1,
            reconnect_max_seconds=1.0,
        ),
        homeassistant=home or HomeAssistantSettings(),
    )


class _Receiver:
    """Times the first frame in ``color`` on a receiving lamp (on its agent thread)."""

    def __init__(self, color: str) -> None:
        self.color = color
        self.lamp: SimulatedLamp | None = None
        self.lit = threading.Event()
        self.dark = threading.Event()
        self.dark.set()  # before the first touch
        self.lit_at = 0.0

    def changed(self) -> None:
        assert self.lamp is not None  # set before the lamp starts
        shown = self.lamp.led()
        if shows_color(shown, self.color, gamma=_LOOK.gamma):
            if not self.lit.is_set():
                self.lit_at = time.monotonic()
                self.lit.set()
        elif max(shown) < 0.001 and self.lit.is_set():
            # Dark *after* the glow: the dark frames before it rises do not count.
            self.dark.set()


def _measure(
    site: BenchSite, homes: dict[str, HomeAssistantSettings | None], *, touches: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    senders: dict[str, SimulatedLamp] = {}
    receivers: dict[str, _Receiver] = {}
    started: list[SimulatedLamp] = []
    try:
        for case in _CASES:
            color = _COLORS[case]
            home = homes[case]
            receiver = _Receiver(color)
            senders[case] = SimulatedLamp(settings=_settings(site, f"{case[:5]}-a", color, home))
            receiver.lamp = SimulatedLamp(
                settings=_settings(site, f"{case[:5]}-b", "#808080", home),
                changed=receiver.changed,
            )
            receivers[case] = receiver
            for lamp in (senders[case], receiver.lamp):
                lamp.start()
                started.append(lamp)
        deadline = time.monotonic() + 30.0
        while not all(lamp.agent.online for lamp in started):
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated lamps did not come online within 30 s")
            time.sleep(0.01)
        samples: dict[str, list[float]] = {case: [] for case in _CASES}
        for index in range(_WARM_UP + touches):
            for case in _CASES:
                receiver = receivers[case]
                if not receiver.dark.wait(_WAIT):
                    raise TimeoutError(f"{case} touch {index}: still lit after {_WAIT:g} s")
                receiver.lit.clear()
                receiver.dark.clear()
                pressed = time.monotonic()
                senders[case].press()
                senders[case].release()
                if not receiver.lit.wait(_WAIT):
                    raise TimeoutError(f"{case} touch {index}: no light within {_WAIT:g} s")
                if index >= _WARM_UP:
                    samples[case].append(receiver.lit_at - pressed)
        connections = {
            case: sum(
                lamp.home.connections
                for lamp in (senders[case], receivers[case].lamp)
                if lamp is not None and lamp.home is not None
            )
            for case in _CASES
        }
        return samples, connections
    finally:
        for lamp in started:
            lamp.stop()


@contextlib.contextmanager
def _home_broker(directory: Path) -> Iterator[int]:
    """A plain Mosquitto taking anyone (a home broker), on a free loopback port."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {directory / 'mosquitto.log'}\n"
    )
    with (directory / "stdout.log").open("wb") as log:
        watcher = ParentWatch(log)  # killed with the benchmark, the broker goes too
        process = subprocess.Popen(
            ["/usr/sbin/mosquitto", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        watcher.watch(process.pid)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the home broker did not start (see {directory})") from None
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        watcher.dismiss()


@contextlib.contextmanager
def _black_hole() -> Iterator[int]:
    """A port that accepts every connection and never reads or answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, name="black-hole", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        closing.set()
        listener.close()
        for connection in held:
            connection.close()
        thread.join(5)
