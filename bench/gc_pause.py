"""``python -m bench.gc_pause``: how long a full garbage collection holds a lamp's process.

A full (generation 2) pass scans every tracked object and holds every thread meanwhile (the GIL),
the agent's too: issue 19's undrawn glow and the latency benchmark's tail (BENCHMARKS.md §1).
This imports what ``touchlamp device run`` imports, times full passes, then freezes the
start-up objects with ``gc.freeze()`` (as a lamp could once it is up) and times them again.
"""

from __future__ import annotations

import gc
import importlib
import time

__all__ = ["main"]


def _full_pass_ms(passes: int) -> float:
    """The median of ``passes`` full collections, in ms."""
    times: list[float] = []
    for _ in range(passes):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2]


def main() -> None:
    for module in ("touchlamp.device.cli", "touchlamp.device.link"):  # what a lamp's process holds
        importlib.import_module(module)
    tracked = len(gc.get_objects())
    before = _full_pass_ms(5)
    gc.freeze()
    after = _full_pass_ms(5)
    print(
        f"lamp process: {tracked:,} tracked objects; full collection {before:.1f} ms, "
        f"after gc.freeze() {after:.2f} ms ({gc.get_freeze_count():,} frozen)"
    )


if __name__ == "__main__":
    main()
