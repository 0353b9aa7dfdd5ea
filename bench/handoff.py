"""``python -m bench.handoff [--count N]``: how long handing an event from one thread to another
takes (BENCHMARKS.md §1: a lamp hands each touch or glow across three threads).

One thread puts a timestamp on a ``queue.SimpleQueue`` while the other sleeps in ``get`` with a
timeout, as the lamp's agent does (device/agent.py); the receiver notes how long the item took,
then the sender waits for that before the next, so every item finds the receiver asleep. The
baseline, in the same run: put and get on one thread (the queue's own cost, no hand-off).
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections.abc import Sequence

from bench.stats import LatencySummary, summarize

__all__ = ["handoff_times", "main", "same_thread_times"]

# The agent sleeps until its next frame or event; any wait longer than a hand-off will do.
_RECEIVER_WAIT_SECONDS = 1.0


def handoff_times(count: int) -> list[float]:
    """``count`` put-to-get times, in seconds, from this thread to a sleeping one."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    items: queue.SimpleQueue[float | None] = queue.SimpleQueue()
    received: queue.SimpleQueue[float] = queue.SimpleQueue()

    def receive() -> None:
        while True:
            try:
                sent = items.get(timeout=_RECEIVER_WAIT_SECONDS)
            except queue.Empty:
                continue
            if sent is None:
                return
            received.put(time.perf_counter() - sent)

    receiver = threading.Thread(target=receive, name="handoff-receiver", daemon=True)
    receiver.start()
    times: list[float] = []
    try:
        for _ in range(count):
            time.sleep(0.001)  # let the receiver fall asleep in get() again
            items.put(time.perf_counter())
            times.append(received.get(timeout=10.0))
    finally:
        items.put(None)
        receiver.join(timeout=10.0)
    return times


def same_thread_times(count: int) -> list[float]:
    """``count`` put-then-get times on one thread: the queue without a hand-off."""
    items: queue.SimpleQueue[float] = queue.SimpleQueue()
    times: list[float] = []
    for _ in range(count):
        items.put(time.perf_counter())
        times.append(time.perf_counter() - items.get(timeout=_RECEIVER_WAIT_SECONDS))
    return times


def _ms(summary: LatencySummary) -> str:
    return (
        f"p50 {summary.p50 * 1e6:.1f} µs, p99 {summary.p99 * 1e6:.1f} µs, "
        f"max {summary.max * 1e6:.1f} µs"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="hand-offs (default 2000)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    handoff = summarize(handoff_times(args.count))
    baseline = summarize(same_thread_times(args.count))
    print(f"thread hand-off ({handoff.count}): {_ms(handoff)}")
    print(f"baseline, same thread ({baseline.count}): {_ms(baseline)}")
    print(f"ratio p50 {handoff.p50 / baseline.p50:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
