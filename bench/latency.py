"""Benchmark 1 — touch → light: lamp A's touch pin pressed until lamp B's LED pins show A's colour.

Both lamps are the real device code (``SimulatedLamp``: agent, core, MQTT link, outbox) on
gpiozero's mock pins, in this process; the relay is ``touchlamp relay run`` in its own process;
the broker is the project's Mosquitto. The clock starts before A's pin goes high (a tap: high,
then low — a touch is sent on release) and stops in B's frame callback, on B's own thread, at
the first frame whose PWM values are A's colour (the hue within 3 %, perceived level ≥ 0.2).

B's glow look is shortened for the measurement — a 1 ms rise, 100 ms steady at full, a 1 ms
fade — so the figure is the system's, not the animation's: with the default look B's light
*starts* rising at the same moment and takes its 0.4 s attack to full brightness, by design. Any
frame B draws in those 100 ms shows the colour in full, and B's core draws a glow that ended
before its next frame from its peak (issue 19: a 51 ms look passed undrawn when a
garbage-collection pass held B's thread). Each touch is sent only once B went dark *after* the
previous glow (``GlowWatch``), so every touch is a fresh glow on a dark lamp; the run stops with
an error if B does not light up, or does not go dark again. The relay's per-lamp rate limit is
lifted (a policy, 1 touch/s, not a speed).

A sniffer (a login of its own that may only watch) timestamps A's touch and the glow to B on the
wire, which splits each measurement into the sender's, the relay's and the receiver's share.

Baseline: one broker hop between two plain paho clients in this process (a client with the
relay's login publishes a glow with QoS 1 to lamp ``hop-a``, a client with that lamp's login
receives it: a topic the relay does not read), the same number of times, *interleaved* with the
touches — one hop, one touch, one hop… — so both see the same moments of a shared, noisy
machine; a p99 of a few hundred samples is otherwise mostly a measure of the neighbours.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import SecretStr

from bench.context import BenchContext
from bench.provision import add_observer
from bench.results import Measure, Result
from bench.site import BenchSite
from bench.stats import summarize
from touchlamp.config.device import DeviceSettings, MqttSettings
from touchlamp.config.looks import GlowLook, LookSettings
from touchlamp.device.looks import Rgb
from touchlamp.device.sim import SimulatedLamp
from touchlamp.protocol import Touch, encode

__all__ = ["GlowWatch", "run", "shows_color"]

_SENDER_COLOR = "#ff3300"
_WAIT = 10.0
_WARM_UP = 3
# One "breath" with breath_low=1.0 is 100 ms steady at full: frames may come late, the colour
# still shows in full.
_MEASURE_LOOK = LookSettings(
    glow=GlowLook(
        attack_seconds=0.001, breaths=1, breath_seconds=0.1, breath_low=1.0, fade_seconds=0.001
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
        with site.relays("relay-1", rate_limited=False) as (relay,), _OneHop(site) as one_hop:
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


def _lamp_settings(site: BenchSite, lamp_id: str, *, color: str) -> DeviceSettings:
    return DeviceSettings(
        lamp_id=lamp_id,
        color=color,
        state_dir=site.directory / lamp_id,
        looks=_MEASURE_LOOK,
        mqtt=MqttSettings(
            host=site.broker.host,
            port=site.broker.port,
            password=SecretStr(site.passwords[lamp_id]),
            topic_root=site.topics.root,
            reconnect_min_seconds=0.1,
            reconnect_max_seconds=1.0,
        ),
    )


def _touch_to_light(site: BenchSite, *, touches: int, one_hop: _OneHop) -> list[_Timing]:
    watch = GlowWatch(_SENDER_COLOR, gamma=_MEASURE_LOOK.gamma)
    holder: list[SimulatedLamp] = []

    def b_changed() -> None:  # on B's agent thread, right after each frame reached its pins
        watch.saw(holder[0].led(), time.monotonic())

    a = SimulatedLamp(settings=_lamp_settings(site, "lamp-a", color=_SENDER_COLOR))
    b = SimulatedLamp(settings=_lamp_settings(site, "lamp-b", color="#0066ff"), changed=b_changed)
    holder.append(b)
    sniffer = _Sniffer(site, [site.topics.touch("lamp-a"), site.topics.glow("lamp-b")])
    a.start()
    b.start()
    try:
        deadline = time.monotonic() + 30.0
        while not (a.agent.online and b.agent.online):
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated lamps did not come online within 30 s")
            time.sleep(0.01)
        timings: list[_Timing] = []
        for index in range(_WARM_UP + touches):
            one_hop.sample()
            watch.arm()
            sniffer.clear()
            pressed = time.monotonic()
            a.press()
            a.release()
            lit_at = watch.wait_lit(_WAIT)
            if lit_at is None:
                raise TimeoutError(
                    f"touch {index}: lamp B did not show {_SENDER_COLOR} within {_WAIT:g} s "
                    f"(its LED last showed {watch.last}); --keep DIR keeps the relay's store "
                    "and the logs"
                )
            touch_seen, glow_seen = sniffer.times(2)
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
        sniffer.close()


class _Sniffer:
    """A client of its own login (bench/provision.py ``add_observer``) that timestamps what
    passes on ``topics``: it only watches, the relay's shared subscription still gets every
    touch."""

    def __init__(self, site: BenchSite, topics: list[str]) -> None:
        password = add_observer(site.broker, "bench-sniffer", filters=topics)
        self._seen: list[float] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self._client = _client(f"sniffer-{uuid.uuid4().hex[:6]}", "bench-sniffer", password)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.connect(site.broker.host, site.broker.port)
        self._client.loop_start()
        self._client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(_WAIT):
            raise TimeoutError("the sniffer did not subscribe")

    def clear(self) -> None:
        with self._changed:
            self._seen.clear()

    def times(self, count: int) -> tuple[float, float]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._seen) >= count, timeout=_WAIT):
                raise TimeoutError(f"the sniffer saw {len(self._seen)} of {count} messages")
            return self._seen[0], self._seen[1]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, _c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        with self._changed:
            self._seen.append(time.monotonic())
            self._changed.notify_all()


class _OneHop:
    """Two plain paho clients, one broker hop apart: the relay's login publishes a glow to lamp
    ``hop-a``, ``hop-a``'s login receives it. ``sample()`` times one, ``samples`` holds them."""

    def __init__(self, site: BenchSite) -> None:
        self._topic = site.topics.glow("hop-a")
        self._received = threading.Event()
        self._arrived: list[float] = []
        self.samples: list[float] = []
        self._payload = encode(Touch(seq=0, stream=1, color=_SENDER_COLOR, ts=0))
        sender = f"hop-pub-{uuid.uuid4().hex[:6]}"
        self._sender = _client(sender, *site.relay_login(sender))
        self._receiver = _client("hop-a", "hop-a", site.passwords["hop-a"])
        self._site = site

    def __enter__(self) -> _OneHop:
        subscribed = threading.Event()
        self._receiver.on_message = self._on_message
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
        self._received.clear()
        self._arrived.clear()
        sent = time.monotonic()
        self._sender.publish(self._topic, self._payload, qos=1)
        if not self._received.wait(_WAIT):
            raise TimeoutError(f"one hop: nothing arrived within {_WAIT:g} s")
        self.samples.append(self._arrived[0] - sent)

    def _on_message(self, _c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        self._arrived.append(time.monotonic())
        self._received.set()


def _client(client_id: str, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(username, password)
    return client
