"""Benchmark 5 — scale-out: the same burst through two relays on the shared subscription, then one.

Both relays are ``touchlamp relay run`` processes with their own client ids and the same share
name and SQLite store, as several relays on one store run in DEPLOY.md (there on
PostgreSQL). The figure is the two-relay rate, the baseline the one-relay rate of the same
burst in the same run; loss and duplicates are counted for both. No target: on a machine with
two cores, Mosquitto, the load generator and the relays already share the cores, so a second
relay process adds contention rather than capacity — BENCHMARKS.md explains the measured ratio.
"""

from __future__ import annotations

from dataclasses import asdict

from bench.context import BenchContext
from bench.pairs import PairedLamps
from bench.results import Measure, Result
from bench.site import BenchSite
from bench.swarm import Swarm
from bench.throughput import WINDOW, describe, relay_run

__all__ = ["run"]


def run(context: BenchContext) -> list[Result]:
    pairs = context.pick(full=50, quick=20, tiny=4)
    touches = context.pick(full=20_000, quick=1_500, tiny=200)
    with BenchSite(context.directory, save_every_change=context.save_every_change) as site:
        swarm = Swarm(host=site.broker.host, port=site.broker.port, name="scaleout-lamps")
        swarm.start()
        try:
            lamps = PairedLamps(site, swarm, pairs=pairs)
            one = relay_run(site, lamps, "relay-1", touches=touches)
            context.say(f"  one relay, {describe(one)}")
            two = relay_run(site, lamps, "relay-1", "relay-2", touches=touches)
            context.say(f"  two relays, {describe(two)}")
        finally:
            swarm.stop()
    return [
        Result(
            bench="scaleout",
            figure=Measure("2 relays, glows/s", two.rate, "glows/s"),
            baseline=Measure("1 relay, same burst", one.rate, "glows/s"),
            target="report and explain (2 cores)",
            met=None if one.exact and two.exact else False,
            details={"pairs": pairs, "window": WINDOW, "one": asdict(one), "two": asdict(two)},
        )
    ]
