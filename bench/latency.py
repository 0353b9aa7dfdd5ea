"""Benchmark 1 — touch → light: lamp A's touch pin pressed until lamp B's LED pins show A's colour.

Both lamps are the real device code (``SimulatedLamp``: agent, core, MQTT link, outbox) on
gpiozero's mock pins, each in a process of its own as lamps in two homes are: A in
``python -m bench.tap_lamp`` (tapped on request), B in this one; the relay is ``touchlamp relay
run`` in its own process; the broker is the project's Mosquitto. The clock starts in A's process
just before its pin goes high (a tap: high, then low — a touch is sent on release) and stops in
B's frame callback, on B's own thread, at the first frame whose PWM values are A's colour (the
hue within 3 %, perceived level ≥ 0.2). ``CLOCK_MONOTONIC`` is one clock for every process.

B's glow look is shortened for the measurement — a 1 µs rise, 100 ms steady at full, a 1 ms
fade — so the figure is the system's, not the animation's: with the default look B's light
*starts* rising at the same moment and takes its 0.4 s attack to full brightness, by design.
(The rise was 1 ms until issue 12: the frame B draws on the glow's arrival is at the start of the
rise, dark, and the next came only when the rise ended, so every measurement held a millisecond
of animation.) Any frame B draws in those 100 ms shows the colour in full, and B's core draws a
glow that ended before its next frame from its peak (issue 19: a 51 ms look passed undrawn when a
garbage-collection pass held B's thread). Each touch is sent only once B went dark *after* the
previous glow (``GlowWatch``), so every touch is a fresh glow on a dark lamp; the run stops with
an error if B does not light up, or does not go dark again. The relay's per-lamp rate limit is
lifted (a policy, 1 touch/s, not a speed).

A sniffer (bench/peer.py ``sniff``: its own process, on a login that may only watch) timestamps
A's touch and the glow to B on the wire, which splits each measurement into the sender's, the
relay's and the receiver's share.

Baseline: one broker hop between two plain paho clients in this process (a client with the
relay's login publishes a glow with QoS 1 to lamp ``hop-a``, a client with that lamp's login
receives it: a topic the relay does not read), the same number of times, *interleaved* with the
touches — one hop (until its PUBACK is back), one touch, one hop… — so both see the same moments
of a shared, noisy machine; a p99 of a few hundred samples is otherwise mostly a measure of the
neighbours.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import SecretStr

from bench.context import BenchContext
from bench.provision import add_observer
from bench.results import Measure, Result
from bench.site import BenchSite, PeerProcess
from bench.stats import summarize
from touchlamp.config.device import DeviceSettings, MqttSettings
from touchlamp.config.looks import GlowLook, LookSettings
from touchlamp.device.looks import Rgb
from touchlamp.device.sim import SimulatedLamp
from touchlamp.protocol import Touch, encode

__all__ = [
    "MEASURE_LOOK",
    "GlowWatch",
    "OneHop",
    "lamp_settings",
    "paho_client",
    "run",
    "shows_color",
]

_SENDER_COLOR = "#ff3300"
_WAIT = 10.0
_WARM_UP = 3
# One "breath" with breath_low=1.0 is 100 ms steady at full: frames may come late, the colour
# still shows in full.
MEASURE_LOOK = LookSettings(
    glow=GlowLook(
        attack_seconds=1e-6, breaths=1, breath_seconds=0.1, breath_low=1.0, fade_seconds=0.001
    ),
    ambient_level=0.0,  # no partner-online light (on by default): B is dark between glows
)
_DARK = 0.001  # every channel's PWM duty below this: the LED is off


def shows_color(shown: Rgb, color: str, *, gamma: float, tolerance: float = 0.03) -> bool:
    """Whether PWM values ``shown`` are ``color`` (``#rrggbb``) at a visible brightness."""
    perceived = [channel ** (1 / gamma) for channel in shown]
    level = max(perceived)
    if level < 0.2:
        return False
    target = Rgb.from_hex(color)
    top = target.max_channel()
    return all(
        abs(channel / level - want / top) <= tolerance
        for channel, want in zip(perceived, target, strict=True)
    )


class GlowWatch:
    """What lamp B's frames showed for one touch, since the benchmark last called ``arm``.

    ``saw`` is called on B's thread after each frame; the benchmark's thread calls ``arm``
    before a touch (B must be dark then), waits for the first frame in the sender's colour
    (``wait_lit``: the rise is timed from that frame) and then for the first dark frame after it
    (``wait_dark``): only then may the next touch go.
    """

    def __init__(self, color: str, *, gamma: float) -> None:
        self._color = color
        self._gamma = gamma
        self._changed = threading.Condition()
        self._last: Rgb | None = None
        self._armed = False
        self._lit_at: float | None = None
        self._dark_again = False

    @property
    def last(self) -> Rgb | None:
        """The last frame B showed (``None`` before its first)."""
        with self._changed:
            return self._last

    def arm(self) -> None:
        """Start watching for one touch's glow; ``RuntimeError`` unless B is dark now."""
        with self._changed:
            if self._last is None or max(self._last) >= _DARK:
                raise RuntimeError(
                    f"lamp B shows {self._last} before the touch, not dark: each touch must "
                    "start from a dark lamp (wait_dark after the previous glow)"
                )
            self._armed = True
            self._lit_at = None
            self._dark_again = False

    def saw(self, shown: Rgb, at: float) -> None:
        """B showed ``shown`` at monotonic time ``at`` (B's thread)."""
        with self._changed:
            self._last = shown
            if not self._armed:
                return
            if self._lit_at is None:
                if shows_color(shown, self._color, gamma=self._gamma):
                    self._lit_at = at
                    self._changed.notify_all()
            elif not self._dark_again and max(shown) < _DARK:
                self._dark_again = True
                self._changed.notify_all()

    def wait_lit(self, timeout: float) -> float | None:
        """When B first showed the colour after ``arm``; ``None`` if not within ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: self._lit_at is not None, timeout=timeout)
            return self._lit_at

    def wait_dark(self, timeout: float) -> bool:
        """Whether B went dark after the glow ``wait_lit`` saw, within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._dark_again, timeout=timeout)


def run(context: BenchContext) -> list[Result]:
    touches = context.pick(full=500, quick=60, tiny=5)
    with BenchSite(context.directory, save_every_change=context.save_every_change) as site:
        site.add_lamps(["lamp-a", "lamp-b", "hop-a"])
        site.pair([["lamp-a", "lamp-b"]])
        with site.relays("relay-1", rate_limited=False) as (relay,), OneHop(site) as one_hop:
            before = relay.sample()
            timings = _touch_to_light(site, touches=touches, one_hop=one_hop)
            after = relay.sample()
    hop = summarize(one_hop.samples[_WARM_UP:])
    context.say(f"  one hop: p50 {hop.p50 * 1000:.2f} ms, p99 {hop.p99 * 1000:.2f} ms")
    ours = summarize([t.total for t in timings])
    stages = {
        "press_to_touch_on_wire": summarize([t.sender for t in timings]).as_ms(),
        "touch_to_glow_on_wire": summarize([t.relay for t in timings]).as_ms(),
        "glow_on_wire_to_light": summarize([t.receiver for t in timings]).as_ms(),
    }
    context.say(
        f"  touch → light: p50 {ours.p50 * 1000:.2f} ms, p99 {ours.p99 * 1000:.2f} ms, "
        f"max {ours.max * 1000:.2f} ms over {ours.count} touches"
    )
    context.say(
        "  stages, p50/p99 ms: "
        + "; ".join(
            f"{name.replace('_', ' ')} {stage['p50_ms']:.2f}/{stage['p99_ms']:.2f}"
            for name, stage in stages.items()
        )
    )
    return [
        Result(
            bench="latency",
            figure=Measure("touch→light p99", ours.p99 * 1000, "ms"),
            baseline=Measure("one hop p99", hop.p99 * 1000, "ms"),
            target="≤ 3 x one hop p99",
            met=ours.p99 <= 3 * hop.p99,
            details={
                "touch_to_light": ours.as_ms(),
                "stages": stages,
                "one_hop": hop.as_ms(),
                "relay_peak_rss_mb": round(after.hwm_bytes / 1e6, 1),
                "relay_cpu_seconds": round(after.cpu_seconds - before.cpu_seconds, 3),
                "b_glow_look": "attack 1 ms, 100 ms steady, fade 1 ms (default attack is 0.4 s)",
            },
        )
    ]


@dataclass(frozen=True, slots=True)
class _Timing:
    """One touch, in seconds: the whole way, and its three stages as a sniffer saw the wire."""

    total: float
    sender: float  # pressed → A's touch seen on the broker (A's agent, outbox, paho)
    relay: float  # touch seen → glow seen (broker, relay, broker)
    receiver: float  # glow seen → B's LED pins (B's paho, link, agent, frame)


def lamp_settings(
    *, lamp_id: str, color: str, state_dir: Path, host: str, port: int, password: str, root: str
) -> DeviceSettings:
    """A measured lamp's settings (A's in bench/tap_lamp.py, B's here): the measuring look."""
    return DeviceSettings(
        lamp_id=lamp_id,
        color=color,
        state_dir=state_dir,
        looks=MEASURE_LOOK,
        mqtt=MqttSettings(
            host=host,
            port=port,
            password=SecretStr(password),
            topic_root=root,
            reconnect_min_seconds=0.1,
            reconnect_max_seconds=1.0,
        ),
    )


def _touch_to_light(site: BenchSite, *, touches: int, one_hop: OneHop) -> list[_Timing]:
    watch = GlowWatch(_SENDER_COLOR, gamma=MEASURE_LOOK.gamma)
    holder: list[SimulatedLamp] = []

    def b_changed() -> None:  # on B's agent thread, right after each frame reached its pins
        watch.saw(holder[0].led(), time.monotonic())

    b_settings = lamp_settings(
        lamp_id="lamp-b",
        color="#0066ff",
        state_dir=site.directory / "lamp-b",
        host=site.broker.host,
        port=site.broker.port,
        password=site.passwords["lamp-b"],
        root=site.topics.root,
    )
    b = SimulatedLamp(settings=b_settings, changed=b_changed)
    holder.append(b)
    a = PeerProcess(
        None,
        module="bench.tap_lamp",
        site=site,
        username="lamp-a",
        password=site.passwords["lamp-a"],
        root=site.topics.root,
        state_dir=str(site.directory / "lamp-a"),
        color=_SENDER_COLOR,
    )
    sniffer: _Sniffer | None = None
    b.start()
    try:
        a.wait_ready()
        deadline = time.monotonic() + 30.0
        while not b.agent.online:
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated lamp B did not come online within 30 s")
            time.sleep(0.01)
        # Subscribed after the lamps and the relay, so the broker sends to it last: it does
        # not hold back the glow to B (nor the touch to the relay) by the one send it costs.
        sniffer = _Sniffer(site, [site.topics.touch("lamp-a"), site.topics.glow("lamp-b")])
        timings: list[_Timing] = []
        for index in range(_WARM_UP + touches):
            one_hop.sample()
            watch.arm()
            (pressed,) = a.ask("tap")
            lit_at = watch.wait_lit(_WAIT)
            if lit_at is None:
                raise TimeoutError(
                    f"touch {index}: lamp B did not show {_SENDER_COLOR} within {_WAIT:g} s "
                    f"(its LED last showed {watch.last}); --keep DIR keeps the relay's store "
                    "and the logs"
                )
            touch_seen, glow_seen = sniffer.times()
            if not watch.wait_dark(_WAIT):
                raise TimeoutError(
                    f"touch {index}: lamp B still showed {watch.last} {_WAIT:g} s after the "
                    "glow rose: the next touch would measure a lamp already lit"
                )
            if index >= _WARM_UP:
                timings.append(
                    _Timing(
                        total=lit_at - pressed,
                        sender=touch_seen - pressed,
                        relay=glow_seen - touch_seen,
                        receiver=lit_at - glow_seen,
                    )
                )
        return timings
    finally:
        a.stop()
        b.stop()
        if sniffer is not None:
            sniffer.close()


class _Sniffer:
    """A process of its own (bench/peer.py ``sniff``, on a login that may only watch) that
    timestamps what passes on ``topics``; the relay's shared subscription still gets every
    touch. In a process of its own, its paho thread does not take the interpreter from lamp B
    at the moment B's glow arrives (it did, for 0.1-0.3 ms, when it ran in this one); it speaks
    only when ``times`` asks, after B lit up."""

    def __init__(self, site: BenchSite, topics: list[str]) -> None:
        password = add_observer(site.broker, "bench-sniffer", filters=topics)
        self._topics = topics
        self._peer = PeerProcess(
            "sniff",
            site=site,
            username="bench-sniffer",
            password=password,
            client_id=f"sniffer-{uuid.uuid4().hex[:6]}",
            topic=",".join(topics),
        )
        self._peer.wait_ready(timeout=_WAIT)

    def times(self) -> tuple[float, float]:
        """When the touch and then the glow passed, since the last call (one of each)."""
        seen = self._peer.ask(f"report {len(self._topics)}")
        if [topic for topic, _at in seen] != self._topics:
            raise RuntimeError(
                f"the sniffer saw {seen} since the last touch, not one message on each of "
                f"{self._topics} in that order"
            )
        (_, touch_at), (_, glow_at) = seen
        return touch_at, glow_at

    def close(self) -> None:
        self._peer.stop()


class OneHop:
    """Two plain paho clients, one broker hop apart: the relay's login publishes a glow to lamp
    ``hop-a``, ``hop-a``'s login receives it. ``sample()`` times one, ``samples`` holds them."""

    def __init__(self, site: BenchSite) -> None:
        self._topic = site.topics.glow("hop-a")
        self._received = threading.Event()
        self._acknowledged = threading.Event()
        self._arrived: list[float] = []
        self.samples: list[float] = []
        self._payload = encode(Touch(seq=0, stream=1, color=_SENDER_COLOR, ts=0))
        sender = f"hop-pub-{uuid.uuid4().hex[:6]}"
        self._sender = paho_client(sender, *site.relay_login(sender))
        self._receiver = paho_client("hop-a", "hop-a", site.passwords["hop-a"])
        self._site = site

    def __enter__(self) -> OneHop:
        subscribed = threading.Event()
        self._receiver.on_message = self._on_message
        self._sender.on_publish = lambda *_args: self._acknowledged.set()
        self._receiver.on_subscribe = lambda *_args: subscribed.set()
        for client in (self._receiver, self._sender):
            client.connect(self._site.broker.host, self._site.broker.port)
            client.loop_start()
        self._receiver.subscribe(self._topic, qos=1)
        if not subscribed.wait(_WAIT):
            raise TimeoutError("the one-hop receiver did not subscribe")
        return self

    def __exit__(self, *_exc: object) -> None:
        for client in (self._sender, self._receiver):
            client.disconnect()
            client.loop_stop()

    def sample(self) -> None:
        """Time one hop; returns once the sender has its PUBACK too, so that the hop's last
        exchanges do not overlap the touch that follows (they did: its paho threads took the
        interpreter from lamp A for up to 0.3 ms)."""
        self._received.clear()
        self._acknowledged.clear()
        self._arrived.clear()
        sent = time.monotonic()
        self._sender.publish(self._topic, self._payload, qos=1)
        if not self._received.wait(_WAIT):
            raise TimeoutError(f"one hop: nothing arrived within {_WAIT:g} s")
        self.samples.append(self._arrived[0] - sent)
        if not self._acknowledged.wait(_WAIT):
            raise TimeoutError(f"one hop: no PUBACK within {_WAIT:g} s")

    def _on_message(self, _c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        self._arrived.append(time.monotonic())
        self._received.set()


def paho_client(client_id: str, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(username, password)
    return client
