"""``python -m bench.fsync [--dir DIR] [--count N]``: how long ``fsync`` of a small write takes
on this machine's disk (BENCHMARKS.md, "The machine").

Writes 64 bytes at the end of a file and ``fsync``s it, ``--count`` times, in ``--dir`` (by
default a temporary directory: put it on the disk you care about), then prints p50, p99 and
max. The broker's saves and the lamps' outboxes wait on exactly this.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.stats import summarize

__all__ = ["fsync_latencies", "main"]

_PAYLOAD = b"t" * 63 + b"\n"


def fsync_latencies(directory: Path, count: int) -> list[float]:
    """``count`` append-then-fsync times, in seconds, in a file of their own in ``directory``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    with tempfile.NamedTemporaryFile(dir=directory, prefix="fsync-", suffix=".bin") as file:
        descriptor = file.fileno()
        times: list[float] = []
        for _ in range(count):
            os.write(descriptor, _PAYLOAD)
            started = time.perf_counter()
            os.fsync(descriptor)
            times.append(time.perf_counter() - started)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fsync", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    parser.add_argument("--count", type=int, default=1000, help="how many fsyncs (default 1000)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    directory: Path = args.dir or Path(tempfile.gettempdir())
    if not directory.is_dir():
        parser.error(f"--dir {directory} is not a directory; create it or pick another")
    summary = summarize(fsync_latencies(directory, args.count))
    print(
        f"fsync of a small write in {directory}: p50 {summary.p50 * 1000:.2f} ms, "
        f"p99 {summary.p99 * 1000:.2f} ms, max {summary.max * 1000:.2f} ms "
        f"({summary.count} fsyncs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
