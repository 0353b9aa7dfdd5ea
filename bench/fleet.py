"""Benchmark 3 — a fleet: many lamps connected at once, a steady stream of touches spread over them.

The lamps are light protocol clients (bench/swarm.py: paho clients on one selector thread, not
a process or thread each), in pairs; each publishes its retained ``online`` like a real lamp and
subscribes to its glow topic. Touches go out at a fixed rate, round-robin over the lamps in a
shuffled order; latency is from a touch's publish to its glow's arrival at the partner, both
taken on the swarm's thread. The relay (``touchlamp relay run``, default settings, including its
rate limit of 1 touch/s per lamp) runs in its own process; its CPU and memory come from ``/proc``.

Baseline: the same lamps, rate and duration through a relay that does no work (bench/peer.py
``echo``: a plain paho client turning each touch into a glow), measured first in the same run.

Also measured: creating the lamps on the broker — most in batches per dynamic-security message,
then the last few one at a time through ``BrokerAdmin`` (as ``touchlamp broker lamp add`` does)
— and connecting them all.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.context import BenchContext
from bench.pairs import LAMP_SESSION_EXPIRY
from bench.procfs import ProcessSample, cpu_percent, sample
from bench.results import Measure, Result
from bench.site import BenchSite, SiteError, echo_relay
from bench.stats import summarize
from bench.swarm import Swarm, SwarmClient
from touchlamp.broker.state import import_lamps
from touchlamp.config.broker import BrokerSettings
from touchlamp.protocol import Availability, Topics, Touch, encode, encode_availability

__all__ = ["run"]

_TARGET_P99_MS = 50.0
_TARGET_FIRST_GLOW_SECONDS = 2.0
_TARGET_ONE_MORE_MS = 100.0
_PROBE_EVERY = 0.02  # seconds between touches (each from another lamp) while the relay starts
# After every touch has its glow, wait this long for duplicates (as bench/burst.py does).
_LATE_DUPLICATES = 0.5
_STRAGGLERS = 10.0  # seconds to wait for the last glows after the last touch
# A starting relay reads every lamp's retained availability and publishes group states: the
# load starts once it is done (its CPU below this share of a core for one interval).
_IDLE_CPU_PERCENT = 10.0
_IDLE_INTERVAL = 0.5
_SETTLE_LIMIT = 60.0


@dataclass(slots=True)
class _Load:
    """Touches sent and glows seen during one load run (used on the swarm's thread only).

    Both lamps of a pair touch, so some touches cross within the relay's mutual window: then the
    sender also gets an "answer" glow carrying its own touch id (server/forwarding.py). Those are
    counted apart; latency, loss and duplicates are about each touch's glow at the partner.
    """

    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    duplicates: int = 0
    answers: int = 0
    unexpected: int = 0
    first_glow_at: float | None = None

    def on_glow(self, topic: str, payload: bytes, at: float) -> None:
        touch = json.loads(payload)["touch"]
        recipient = topic.rsplit("/", 2)[-2]
        if touch.partition(":")[0] == recipient:
            self.answers += 1
            return
        sent = self.sent_at.get(touch)
        if sent is None:
            self.unexpected += 1
        elif sent < 0:
            self.duplicates += 1
        else:
            self.latencies.append(at - sent)
            self.sent_at[touch] = -1.0  # seen
            if self.first_glow_at is None:
                self.first_glow_at = at


@dataclass(frozen=True, slots=True)
class LoadRun:
    touches: int
    received: int
    lost: int
    duplicates: int
    mutual_answers: int
    unexpected: int  # glows for no touch of this run (a late one from an earlier run)
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_percent: float  # of the forwarding process (relay or echo), one core = 100
    rss_mb: float
    hwm_mb: float


def run(context: BenchContext) -> list[Result]:
    lamp_count = context.lamps or context.pick(full=1000, quick=200, tiny=20)
    rate = context.pick(full=200, quick=200, tiny=20)
    seconds = context.pick_seconds(full=60.0, quick=10.0, tiny=2.0)
    one_by_one = min(context.pick(full=50, quick=10, tiny=2), lamp_count // 2)
    ids = [f"fleet-{index:05d}" for index in range(lamp_count)]
    imported: dict[str, str] = {}
    import_seconds: list[float] = []

    def import_bulk(settings: BrokerSettings) -> None:
        started = time.monotonic()
        imported.update(import_lamps(settings, ids[:-one_by_one]))
        import_seconds.append(time.monotonic() - started)
        import_seconds.append(time.monotonic())  # the broker starts now

    with BenchSite(
        context.directory, save_every_change=context.save_every_change, before_start=import_bulk
    ) as site:
        provisioning = _provision(
            context,
            site,
            ids,
            one_by_one=one_by_one,
            imported=imported,
            import_seconds=import_seconds,
        )
        pairs = [ids[index : index + 2] for index in range(0, lamp_count, 2)]
        broker_pid = site.broker.pid
        assert broker_pid is not None
        broker_before = sample(broker_pid)
        # Every relay login before the swarm connects: the broker admin's session runs paho's
        # own loop, which waits in select(), and select() cannot watch a socket numbered 1024
        # or more — the numbers the swarm's thousands of sockets take. An admin session opened
        # after them never sees its CONNACK (no figure at 3,000 lamps and up, before this).
        for name in ("bench-echo", "relay-1"):
            site.relay_login(name)
        swarm = Swarm(host=site.broker.host, port=site.broker.port, name="fleet")
        swarm.start()
        try:
            holder = [_Load()]  # the current run's; _drive swaps in a fresh one

            def on_glow(topic: str, payload: bytes, at: float) -> None:
                holder[0].on_glow(topic, payload, at)

            connect_started = time.monotonic()
            clients = swarm.connect_all(
                [(lamp_id, site.passwords[lamp_id], lamp_id) for lamp_id in ids],
                subscribe=lambda lamp_id: [site.topics.glow(lamp_id)],
                on_message=lambda _lamp_id: on_glow,
                session_expiry=LAMP_SESSION_EXPIRY,
            )
            connect_seconds = time.monotonic() - connect_started
            swarm.run(lambda: _announce_online(clients, site.topics))
            context.say(f"  {lamp_count} lamps connected in {connect_seconds:.1f} s")
            broker_after = sample(broker_pid)
            footprint = _broker_footprint(broker_pid, broker_before, broker_after, lamp_count)
            context.say(
                f"  broker: {footprint['broker_rss_mb']} MB RSS "
                f"({footprint['broker_kb_per_lamp']} kB per lamp), "
                f"{footprint['broker_fds']} file descriptors"
            )

            baseline = _echo_baseline(
                site, swarm, clients, holder, pairs=pairs, rate=rate, seconds=seconds
            )
            context.say(f"  echo (no-work relay): {_describe(baseline)}")
            # The relay's first start (a new session: every lamp's retained availability comes),
            # then the restart that is measured, as after an upgrade or a crash.
            first_start = _first_start(site)
            context.say(f"  relay's first start settled in {first_start:.1f} s; restarting it")
            probe = _start_probing(swarm, clients, holder, site.topics)
            relay_started = time.monotonic()
            with site.relays("relay-1") as (relay,):
                first_glow_seconds = _first_glow(swarm, probe, since=relay_started)
                settle_seconds = _wait_until_idle(relay.pid)
                context.say(
                    f"  relay forwarded its first touch {first_glow_seconds:.2f} s after it "
                    f"was started; settled {settle_seconds:.1f} s after connecting"
                )
                ours = _drive(
                    swarm,
                    clients,
                    holder,
                    pid=relay.pid,
                    rate=rate,
                    seconds=seconds,
                    topics=site.topics,
                )
            context.say(f"  relay: {_describe(ours)}")
        finally:
            swarm.stop()
    details: dict[str, object] = {
        "lamps": lamp_count,
        "touches_per_second": rate,
        "seconds": seconds,
        "connect_seconds": round(connect_seconds, 2),
        "relay_settle_seconds": round(settle_seconds, 2),
        "relay_first_glow_seconds": round(first_glow_seconds, 2),
        "relay_first_start_settle_seconds": round(first_start, 2),
        "provisioning": provisioning,
        **footprint,
        "relay_kb_per_lamp": round(ours.rss_mb * 1000 / lamp_count, 2),
        "relay": asdict(ours),
        "echo": asdict(baseline),
        "relay_settings": "defaults (rate limit 1/s per lamp, burst 20)",
    }
    return _results(details, ours=ours, baseline=baseline, provisioning=provisioning)


def _provision(
    context: BenchContext,
    site: BenchSite,
    ids: list[str],
    *,
    one_by_one: int,
    imported: dict[str, str],
    import_seconds: list[float],
) -> dict[str, object]:
    """The lamps on the broker and in the store, paired; what creating and removing cost."""
    lamp_count = len(ids)
    start_seconds = time.monotonic() - import_seconds[1]
    # Most lamps imported into the stopped broker (one file write: broker/state.py), then the
    # last few added online one at a time through BrokerAdmin (as `touchlamp broker lamp
    # add` does), so the one-at-a-time figure is what adding a lamp to a full broker costs:
    # the plugin rewrites its whole JSON after every command.
    site.record_lamps(imported)
    admin_seconds = site.add_lamps(ids[-one_by_one:], together=False)
    pairs = [ids[index : index + 2] for index in range(0, lamp_count, 2)]
    site.pair(pairs)
    # Before the swarm connects: paho's loop_start() thread uses select(), which fails on
    # descriptors past 1,024, and the swarm holds one per lamp.
    remove_seconds = _remove_connected(site)
    provisioning: dict[str, object] = {
        "one_by_one_lamps": one_by_one,
        "one_by_one_seconds_per_lamp": round(admin_seconds / one_by_one, 4),
        "batched_lamps": lamp_count - one_by_one,
        "batched_seconds": round(import_seconds[0], 2),
        "batched_seconds_per_lamp": round(import_seconds[0] / (lamp_count - one_by_one), 6),
        "batched_how": "import_lamps into the stopped broker (one write), then its start",
        "broker_start_seconds": round(start_seconds, 2),
        "remove_connected_seconds": round(remove_seconds, 4),
    }
    context.say(
        f"  {lamp_count} lamps created: {lamp_count - one_by_one} imported in "
        f"{import_seconds[0]:.2f} s (broker start {start_seconds:.2f} s), then {one_by_one} "
        "online one at a time: "
        f"{provisioning['one_by_one_seconds_per_lamp']} s/lamp; removing a connected "
        f"lamp {provisioning['remove_connected_seconds']} s"
    )
    return provisioning


def _results(
    details: dict[str, object],
    *,
    ours: LoadRun,
    baseline: LoadRun,
    provisioning: dict[str, object],
) -> list[Result]:
    lamp_count, rate = details["lamps"], details["touches_per_second"]
    first_glow_seconds = float(str(details["relay_first_glow_seconds"]))
    settle_seconds = float(str(details["relay_settle_seconds"]))
    return [
        Result(
            bench="fleet",
            figure=Measure(f"p99 touch→glow, {lamp_count} lamps", ours.p99_ms, "ms"),
            baseline=Measure("no-work relay p99", baseline.p99_ms, "ms"),
            target=f"≤ {_TARGET_P99_MS:g} ms, no loss",
            met=ours.p99_ms <= _TARGET_P99_MS and ours.lost == 0 and ours.duplicates == 0,
            details=details,
        ),
        Result(
            bench="fleet",
            figure=Measure(f"relay CPU at {rate} touches/s", ours.cpu_percent, "% of a core"),
            baseline=Measure("no-work relay CPU", baseline.cpu_percent, "% of a core"),
            target="(reported)",
            met=None,
            details={"relay_rss_mb": ours.rss_mb, "relay_hwm_mb": ours.hwm_mb},
        ),
        Result(
            bench="fleet",
            figure=Measure(
                f"relay start → first glow, {lamp_count} lamps", first_glow_seconds, "s"
            ),
            baseline=Measure("relay settled (CPU idle)", settle_seconds, "s"),
            target=f"≤ {_TARGET_FIRST_GLOW_SECONDS:g} s",
            met=first_glow_seconds <= _TARGET_FIRST_GLOW_SECONDS,
            details={},
        ),
        Result(
            bench="fleet",
            figure=Measure(
                f"one more lamp online, {lamp_count} lamps",
                float(str(provisioning["one_by_one_seconds_per_lamp"])) * 1000,
                "ms",
            ),
            baseline=Measure(
                "removing a connected lamp (kicked)",
                float(str(provisioning["remove_connected_seconds"])) * 1000,
                "ms",
            ),
            target=f"≤ {_TARGET_ONE_MORE_MS:g} ms each",
            met=float(str(provisioning["one_by_one_seconds_per_lamp"])) * 1000
            <= _TARGET_ONE_MORE_MS
            and float(str(provisioning["remove_connected_seconds"])) * 1000 <= _TARGET_ONE_MORE_MS,
            details={},
        ),
    ]


def _echo_baseline(
    site: BenchSite,
    swarm: Swarm,
    clients: list[SwarmClient],
    holder: list[_Load],
    *,
    pairs: list[list[str]],
    rate: int,
    seconds: float,
) -> LoadRun:
    """The same load through a relay that does no work (bench/peer.py ``echo``)."""
    echo = echo_relay(site, pairs)
    try:
        echo.wait_ready()
        baseline = _drive(
            swarm,
            clients,
            holder,
            pid=echo.pid,
            rate=rate,
            seconds=seconds,
            topics=site.topics,
        )
    finally:
        echo.stop()
    return baseline


def _broker_footprint(
    pid: int, before: ProcessSample, after: ProcessSample, lamps: int
) -> dict[str, float]:
    """Mosquitto's memory and descriptors with every lamp connected, and per lamp (all of its
    memory divided by the lamps: their credentials, roles, sessions and connections)."""
    return {
        "broker_rss_mb": round(after.rss_bytes / 1e6, 1),
        "broker_rss_mb_before_connecting": round(before.rss_bytes / 1e6, 1),
        "broker_kb_per_lamp": round(after.rss_bytes / 1e3 / lamps, 2),
        "broker_fds": sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()),
    }


def _remove_connected(site: BenchSite) -> float:
    """Seconds to remove a connected lamp on the full broker, until its connection is closed."""
    lamp_id = "fleet-removed"
    with site.broker.admin(timeout=120.0) as admin:
        password = admin.add_lamp(lamp_id)
        kicked = threading.Event()
        connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=lamp_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.username_pw_set(lamp_id, password)
        client.on_connect = lambda *_args: connected.set()
        client.on_disconnect = lambda *_args: kicked.set()
        client.connect(site.broker.host, site.broker.port)
        client.loop_start()
        try:
            if not connected.wait(30.0):
                raise SiteError(f"{lamp_id} could not connect to measure its removal")
            started = time.monotonic()
            admin.remove_lamp(lamp_id)
            if not kicked.wait(30.0):
                raise SiteError(f"removing {lamp_id} did not close its connection within 30 s")
            return time.monotonic() - started
        finally:
            client.disconnect()
            client.loop_stop()


def _first_start(site: BenchSite) -> float:
    """Start the relay for the first time and stop it once idle; seconds until it was idle."""
    with site.relays("relay-1") as (relay,):
        return _wait_until_idle(relay.pid)


def _wait_until_idle(pid: int) -> float:
    """Seconds until process ``pid`` used under ``_IDLE_CPU_PERCENT`` for ``_IDLE_INTERVAL``."""
    started = time.monotonic()
    previous = sample(pid)
    while time.monotonic() - started < _SETTLE_LIMIT:
        time.sleep(_IDLE_INTERVAL)
        current = sample(pid)
        if cpu_percent(previous, current) < _IDLE_CPU_PERCENT:
            break
        previous = current
    return time.monotonic() - started


def _describe(load: LoadRun) -> str:
    return (
        f"{load.received:,}/{load.touches:,} glows, p50 {load.p50_ms:.1f} ms, p99 "
        f"{load.p99_ms:.1f} ms, max {load.max_ms:.1f} ms, CPU {load.cpu_percent:.1f} %, RSS "
        f"{load.rss_mb:.1f} MB"
    )


def _announce_online(clients: list[SwarmClient], topics: Topics) -> None:
    online = encode_availability(Availability.ONLINE)
    for client in clients:
        client.client.publish(topics.availability(client.name), online, qos=1, retain=True)


def _drive(
    swarm: Swarm,
    clients: list[SwarmClient],
    holder: list[_Load],
    *,
    pid: int,
    rate: int,
    seconds: float,
    topics: Topics,
) -> LoadRun:
    """``rate`` touches/s for ``seconds``, round-robin over the lamps in a shuffled order."""
    load = _Load()
    order = list(clients)
    random.shuffle(order)
    streams = {client.name: random.randrange(2**32) for client in order}
    seqs = dict.fromkeys(streams, 0)
    total = int(rate * seconds)
    now_ms = int(time.time() * 1000)
    position = [0]

    def tick(start: float) -> None:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while position[0] < due:
            client = order[position[0] % len(order)]
            seq = seqs[client.name]
            seqs[client.name] = seq + 1
            touch = Touch(seq=seq, stream=streams[client.name], color="#ff3300", ts=now_ms)
            load.sent_at[f"{client.name}:{streams[client.name]}:{seq}"] = time.monotonic()
            swarm.publish(client, topics.touch(client.name), encode(touch))
            position[0] += 1
        if position[0] < total:
            swarm.call_at(start + position[0] / rate, lambda: tick(start))

    def begin() -> None:
        holder[0] = load
        tick(time.monotonic())

    before = sample(pid)
    swarm.call_soon(begin)
    deadline = time.monotonic() + seconds + _STRAGGLERS
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if swarm.run(lambda: position[0] >= total and len(load.latencies) >= total):
            # Every touch has its glow: a duplicate would come after, so wait for it.
            time.sleep(_LATE_DUPLICATES)
            break
    after = sample(pid)
    latencies = swarm.run(lambda: list(load.latencies))
    duplicates, answers, unexpected = swarm.run(
        lambda: (load.duplicates, load.answers, load.unexpected)
    )
    summary = summarize(latencies) if latencies else None
    return LoadRun(
        touches=total,
        received=len(latencies),
        lost=total - len(latencies),
        duplicates=duplicates,
        mutual_answers=answers,
        unexpected=unexpected,
        p50_ms=round(summary.p50 * 1000, 2) if summary else float("nan"),
        p99_ms=round(summary.p99 * 1000, 2) if summary else float("nan"),
        max_ms=round(summary.max * 1000, 2) if summary else float("nan"),
        cpu_percent=round(cpu_percent(before, after), 1),
        rss_mb=round(after.rss_bytes / 1e6, 1),
        hwm_mb=round(after.hwm_bytes / 1e6, 1),
    )


def _start_probing(
    swarm: Swarm, clients: list[SwarmClient], holder: list[_Load], topics: Topics
) -> _Load:
    """A touch every ``_PROBE_EVERY`` s, each from another lamp, until one has its glow: the
    relay's first forwarded touch, however long its start-up work takes."""
    load = _Load()
    order = list(clients)
    random.shuffle(order)
    stream = random.randrange(2**32)
    now_ms = int(time.time() * 1000)
    # Within the relay's rate limit (1 touch/s per lamp) however few lamps there are.
    every = max(_PROBE_EVERY, 1.0 / len(order))
    position = [0]

    def tick() -> None:
        if load.first_glow_at is not None:
            return
        seq, index = divmod(position[0], len(order))
        client = order[index]
        position[0] += 1
        touch = Touch(seq=seq, stream=stream, color="#00ff66", ts=now_ms)
        load.sent_at[f"{client.name}:{stream}:{seq}"] = time.monotonic()
        swarm.publish(client, topics.touch(client.name), encode(touch))
        swarm.call_at(time.monotonic() + every, tick)

    def begin() -> None:
        holder[0] = load
        tick()

    swarm.call_soon(begin)
    return load


def _first_glow(swarm: Swarm, probe: _Load, *, since: float) -> float:
    """Seconds from ``since`` to the probe's first glow (``_SETTLE_LIMIT`` if none came)."""
    deadline = since + _SETTLE_LIMIT
    while time.monotonic() < deadline:
        first = swarm.run(lambda: probe.first_glow_at)
        if first is not None:
            return first - since
        time.sleep(0.01)
    return _SETTLE_LIMIT
