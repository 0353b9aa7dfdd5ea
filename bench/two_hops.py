"""``python -m bench.two_hops [--count N]``: the least a touch can take on the latency
benchmark's way, next to the one hop it is measured against (BENCHMARKS.md §1).

A touch crosses the broker twice (lamp → relay, relay → lamp). Here both lamps are plain paho
clients in this process and the relay does no work at all (bench/peer.py ``echo``, its own
process: no validation, no store, no rate limit), so what is left is paho and Mosquitto: the
floor under benchmark 1's figure, whatever the lamps and the relay do. Each touch is interleaved
with one hop (bench/latency.py's baseline, the same clients and logins), and each waits for its
PUBACK before the next, as the benchmark does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.latency import OneHop, paho_client
from bench.site import BenchSite, echo_relay
from bench.stats import LatencySummary, summarize

__all__ = ["TwoHops", "main", "measure"]

_WAIT = 10.0
_WARM_UP = 3


@dataclass(frozen=True, slots=True)
class TwoHops:
    one_hop: LatencySummary
    two_hops: LatencySummary


def measure(count: int) -> TwoHops:
    """``count`` touches through the echo relay, interleaved with ``count`` single hops."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    with (
        tempfile.TemporaryDirectory(prefix="touchlamp-two-hops-") as directory,
        BenchSite(Path(directory)) as site,
    ):
        site.add_lamps(["two-a", "two-b", "hop-a"])
        echo = echo_relay(site, [["two-a", "two-b"]])
        try:
            echo.wait_ready()
            with OneHop(site) as one_hop:
                samples = _touches(site, count + _WARM_UP, one_hop)
            hops = one_hop.samples
        finally:
            echo.stop()
    return TwoHops(one_hop=summarize(hops[_WARM_UP:]), two_hops=summarize(samples[_WARM_UP:]))


def _touches(site: BenchSite, count: int, one_hop: OneHop) -> list[float]:
    arrived: list[float] = []
    received, acknowledged, subscribed = threading.Event(), threading.Event(), threading.Event()
    sender = paho_client("two-a", "two-a", site.passwords["two-a"])
    receiver = paho_client("two-b", "two-b", site.passwords["two-b"])

    def on_message(*_args: object) -> None:
        arrived.append(time.monotonic())
        received.set()

    receiver.on_message = on_message
    receiver.on_subscribe = lambda *_args: subscribed.set()
    sender.on_publish = lambda *_args: acknowledged.set()
    for client in (sender, receiver):
        client.connect(site.broker.host, site.broker.port)
        client.loop_start()
    try:
        receiver.subscribe(site.topics.glow("two-b"), qos=1)
        if not subscribed.wait(_WAIT):
            raise TimeoutError("the receiving lamp did not subscribe")
        samples: list[float] = []
        for seq in range(1, count + 1):
            one_hop.sample()
            received.clear()
            acknowledged.clear()
            arrived.clear()
            touch = {"seq": seq, "stream": 1, "color": "#ff3300", "ts": 0}
            sent = time.monotonic()
            sender.publish(site.topics.touch("two-a"), json.dumps(touch), qos=1)
            if not (received.wait(_WAIT) and acknowledged.wait(_WAIT)):
                raise TimeoutError(f"touch {seq}: no glow, or no PUBACK, within {_WAIT:g} s")
            samples.append(arrived[0] - sent)
        return samples
    finally:
        for client in (sender, receiver):
            client.disconnect()
            client.loop_stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.two_hops", description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="touches (and hops) to time")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    result = measure(args.count)
    hop, two = result.one_hop, result.two_hops
    print(f"one hop:                    p50 {hop.p50 * 1000:.2f} ms, p99 {hop.p99 * 1000:.2f} ms")
    print(
        f"two hops, a no-work relay:  p50 {two.p50 * 1000:.2f} ms, p99 {two.p99 * 1000:.2f} ms"
        f"  ({two.p99 / hop.p99:.2f}x one hop at p99)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
