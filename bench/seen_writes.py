"""``python -m bench.seen_writes [--dir DIR] [--count N]``: how long a lamp's seen-glow write
takes, with the shipped checkpoints against SQLite's automatic ones (BENCHMARKS.md §1).

A receiving lamp writes each glow's touch id (device/dedup.py) once it showed it (until issue
12, before: on the way to the LED), before its PUBACK. Shipped: SQLite's automatic checkpoint
is off and the lamp checkpoints when glows pause (here: untimed, every ``--pause-every``
writes; the link does after 300 at most). Baseline, interleaved write by write in the same
directory: the same store with SQLite's default automatic checkpoint (every 1,000 WAL pages),
which runs inside the write that fills the log, with its fsyncs. ``--dir`` puts both on the
disk you care about (an SD card's fsyncs are slower than this machine's).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.stats import LatencySummary, summarize
from touchlamp.device.dedup import SeenTouches

__all__ = ["main", "write_times"]

_SQLITE_DEFAULT_AUTOCHECKPOINT = 1000  # pages; SQLite's own default


def write_times(
    directory: Path, count: int, *, pause_every: int
) -> tuple[list[float], list[float]]:
    """``count`` seen-glow writes' times, in seconds, to each of two fresh stores in
    ``directory``, interleaved (so both see the same moments of a shared machine): the shipped
    store's, then the one with SQLite's automatic checkpoint."""
    if count < 1 or pause_every < 1:
        raise ValueError(f"count and pause_every must be at least 1, got {count}, {pause_every}")
    with tempfile.TemporaryDirectory(dir=directory, prefix="seen-") as state:
        shipped = SeenTouches(state_dir=Path(state) / "shipped")
        automatic = SeenTouches(state_dir=Path(state) / "automatic")
        try:
            # The store turns automatic checkpoints off on its connection; turn them back on
            # there (a per-connection setting) to measure what that choice avoids.
            automatic._db.execute(f"PRAGMA wal_autocheckpoint = {_SQLITE_DEFAULT_AUTOCHECKPOINT}")
            shipped_times: list[float] = []
            automatic_times: list[float] = []
            for index in range(count):
                for store, times in ((shipped, shipped_times), (automatic, automatic_times)):
                    touch_id = str(uuid.uuid4())
                    started = time.perf_counter()
                    store.remember([touch_id])
                    times.append(time.perf_counter() - started)
                if (index + 1) % pause_every == 0:
                    shipped.checkpoint()  # glows paused: off the timed path, as the link does
        finally:
            shipped.close()
            automatic.close()
    return shipped_times, automatic_times


def _ms(summary: LatencySummary) -> str:
    return (
        f"p50 {summary.p50 * 1000:.3f} ms, p99 {summary.p99 * 1000:.3f} ms, "
        f"max {summary.max * 1000:.2f} ms"
    )


def _over(times: Sequence[float], limit: float) -> int:
    return sum(1 for seconds in times if seconds > limit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seen_writes", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    parser.add_argument("--count", type=int, default=3000, help="writes per setting (default 3000)")
    parser.add_argument(
        "--pause-every",
        type=int,
        default=300,
        help="shipped: checkpoint after this many writes (default 300, the link's own cap)",
    )
    parser.add_argument(
        "--slow-ms", type=float, default=2.0, help="count writes over this (default 2 ms)"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.pause_every < 1:
        parser.error(
            f"--count and --pause-every must be at least 1, got {args.count}, {args.pause_every}"
        )
    directory: Path = args.dir or Path(tempfile.gettempdir())
    if not directory.is_dir():
        parser.error(f"--dir {directory} is not a directory; create it or pick another")
    shipped_times, automatic_times = write_times(
        directory, args.count, pause_every=args.pause_every
    )
    shipped, automatic = summarize(shipped_times), summarize(automatic_times)
    slow = args.slow_ms / 1000
    print(f"seen-glow writes in {directory}, {args.count} per setting:")
    print(f"  shipped (checkpoint when glows pause): {_ms(shipped)}")
    print(f"  baseline, SQLite's automatic checkpoint: {_ms(automatic)}")
    print(
        f"  p99 ratio shipped / automatic {shipped.p99 / automatic.p99:.2f}; writes over "
        f"{args.slow_ms:g} ms: shipped {_over(shipped_times, slow)}, automatic "
        f"{_over(automatic_times, slow)} of {args.count}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
