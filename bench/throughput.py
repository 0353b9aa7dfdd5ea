"""Benchmark 2 — relay throughput: a burst of valid touches from many lamps in many groups.

Figure: glows forwarded per second, first touch sent to last glow received, with loss and
duplicates counted per touch id (both must be zero). The relay runs as ``touchlamp relay run``
in a process of its own; its peak memory is the kernel's ``VmHWM`` from ``/proc``, and two
burst sizes run in two fresh relay processes so that their peaks compare (memory bounded: the
bigger burst must not need more).

Baseline: the same sending lamps into one plain paho subscriber (bench/peer.py ``sink``, its own
process, paho tuned as ARCHITECTURE.md says): one broker hop, no relay, same run, same broker.

At most ``WINDOW`` touches are in flight end to end, so the figure is the relay's steady rate.
Mosquitto queues at most ``max_queued_messages`` (touchlamp renders 10,000) for any one client
beyond its inflight messages — the relay's session included — and drops the rest while the lamps
already have their PUBACK; an open-loop burst (no window, reported separately in the full run)
shows whether that bound is reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.burst import BurstOutcome, send_burst
from bench.context import BenchContext
from bench.pairs import PairedLamps
from bench.procfs import cpu_percent
from bench.results import Measure, Result
from bench.site import BenchSite, PeerProcess
from bench.swarm import Swarm
from touchlamp.protocol import Kind

__all__ = ["WINDOW", "RelayRun", "relay_run", "run"]

WINDOW = 500
"""Touches in flight end to end: far below the broker's per-client queue (10,000)."""
_OPEN_LOOP_TOUCHES = 5_000
_DROP_MARK = "Outgoing messages are being dropped"
# Measured (Mosquitto 2.0.11): the plain subscriber starts losing messages at the broker after
# ~67,000 of a windowed burst ("Outgoing messages are being dropped"), however few are in
# flight; BENCHMARKS.md has the numbers. Its rate is steady long before that.
_ONE_HOP_MAX = 50_000


@dataclass(frozen=True, slots=True)
class RelayRun:
    """One burst through one or more relay processes."""

    touches: int
    received: int
    lost: int
    duplicates: int
    seconds: float
    rate: float
    relay_cpu_percent: tuple[float, ...]
    relay_hwm_mb: tuple[float, ...]

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicates == 0


def relay_run(site: BenchSite, lamps: PairedLamps, *relay_ids: str, touches: int) -> RelayRun:
    """A windowed burst through fresh ``touchlamp relay run`` processes (one per client id)."""
    with site.relays(*relay_ids, rate_limited=False) as relays:
        before = [relay.sample() for relay in relays]
        outcome = lamps.burst(touches, window=WINDOW)
        after = [relay.sample() for relay in relays]
    return RelayRun(
        touches=outcome.sent,
        received=outcome.received,
        lost=outcome.lost,
        duplicates=outcome.duplicates,
        seconds=round(outcome.seconds, 3),
        rate=outcome.rate,
        relay_cpu_percent=tuple(
            round(cpu_percent(a, b), 1) for a, b in zip(before, after, strict=True)
        ),
        relay_hwm_mb=tuple(round(sample.hwm_bytes / 1e6, 1) for sample in after),
    )


def describe(run: RelayRun) -> str:
    return (
        f"{run.touches:,} touches: {run.rate:,.0f} glows/s, lost {run.lost}, duplicates "
        f"{run.duplicates}, relay CPU {'/'.join(map(str, run.relay_cpu_percent))} %, peak RSS "
        f"{'/'.join(map(str, run.relay_hwm_mb))} MB"
    )


def run(context: BenchContext) -> list[Result]:
    pairs = context.pick(full=50, quick=20, tiny=4)
    big = context.pick(full=100_000, quick=2_000, tiny=200)
    small = big // 5
    hop_touches = min(big, _ONE_HOP_MAX)
    with BenchSite(context.directory, save_every_change=context.save_every_change) as site:
        swarm = Swarm(host=site.broker.host, port=site.broker.port, name="burst-lamps")
        swarm.start()
        try:
            lamps = PairedLamps(site, swarm, pairs=pairs)
            context.say(f"  {pairs} groups of 2 lamps; bursts of {small:,} and {big:,} touches")
            hop = one_hop(site, lamps, touches=hop_touches)
            context.say(f"  one hop, plain paho: {hop.rate:,.0f} msg/s (lost {hop.lost})")
            small_run = relay_run(site, lamps, "relay-1", touches=small)
            context.say(f"  relay, {describe(small_run)}")
            big_run = relay_run(site, lamps, "relay-1", touches=big)
            context.say(f"  relay, {describe(big_run)}")
            open_loop = None
            open_touches = context.pick(full=_OPEN_LOOP_TOUCHES, quick=0, tiny=300)
            if open_touches:
                open_loop = _open_loop(site, lamps, touches=open_touches)
                dropped = _DROP_MARK in site.broker.log_tail(1_000_000)
                context.say(
                    f"  open-loop burst of {open_loop.sent:,} (no window): lost {open_loop.lost:,}"
                    + (f"; Mosquitto logged {_DROP_MARK!r}" if dropped else "")
                )
        finally:
            swarm.stop()
    details: dict[str, object] = {
        "pairs": pairs,
        "window": WINDOW,
        "relay": "subprocess `touchlamp relay run`; memory = /proc/<pid>/status VmHWM",
        "runs": [asdict(small_run), asdict(big_run)],
        "one_hop": hop.as_dict(),
        "open_loop": None if open_loop is None else open_loop.as_dict(),
    }
    exact = small_run.exact and big_run.exact and hop.lost == 0
    throughput = Result(
        bench="throughput",
        figure=Measure("glows/s, zero loss", big_run.rate, "glows/s"),
        baseline=Measure("one hop, plain paho", hop.rate, "msg/s"),
        target="≥ 0.50 x one hop, no loss, no dups",
        met=exact and big_run.rate >= 0.5 * hop.rate,
        details=details,
    )
    memory = Result(
        bench="throughput",
        figure=Measure(f"relay peak RSS, {big_run.touches:,}", big_run.relay_hwm_mb[0], "MB"),
        baseline=Measure(f"same, {small_run.touches:,}", small_run.relay_hwm_mb[0], "MB"),
        target="≤ 1.10 x (bounded)",
        met=big_run.relay_hwm_mb[0] <= 1.10 * small_run.relay_hwm_mb[0],
        details={"runs": details["runs"]},
    )
    return [throughput, memory]


def one_hop(site: BenchSite, lamps: PairedLamps, *, touches: int) -> BurstOutcome:
    """The same windowed burst into one plain paho subscriber in a process of its own."""
    username, password = site.relay_login("bench-sink")
    sink = PeerProcess(
        "sink",
        site=site,
        username=username,
        password=password,
        client_id="bench-sink",
        topic=site.topics.every(Kind.TOUCH),
        every="100",
    )
    try:
        sink.wait_ready()
        started, sent = send_burst(
            lamps.swarm,
            lamps.senders,
            topics=site.topics,
            touches=touches,
            progress=lambda: sink.progress,
            window=WINDOW,
        )
    finally:
        report = sink.stop()
    received = report.get("received")
    duplicates = report.get("duplicates")
    last = report.get("last_at")
    return BurstOutcome(
        sent=sent,
        received=received if isinstance(received, int) else 0,
        duplicates=duplicates if isinstance(duplicates, int) else 0,
        seconds=last - started if isinstance(last, float) else 0.0,
    )


def _open_loop(site: BenchSite, lamps: PairedLamps, *, touches: int) -> BurstOutcome:
    """Everything at once, no window: how many touches the broker drops for the relay."""
    with site.relays("relay-1", rate_limited=False):
        return lamps.burst(touches, window=None, stall_seconds=5.0)
