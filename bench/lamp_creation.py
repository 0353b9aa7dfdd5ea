"""``python -m bench.lamp_creation [--lamps N] [--each M]``: what creating lamps online costs,
one at a time against in one batch, on a broker that already has lamps (BENCHMARKS.md §3).

Starts the project's Mosquitto in a temporary directory, creates ``--lamps`` minus twice
``--each`` lamps with ``BrokerAdmin.add_lamps`` (``touchlamp broker lamp add ID ID…``), then, at
that size, ``--each`` lamps one at a time with ``BrokerAdmin.add_lamp`` and ``--each`` more in
one ``add_lamps`` call (the baseline, same run, same size), and prints the milliseconds per lamp
of each. The dynamic-security plugin rewrites its whole file after every command, so both grow
with the lamps already there.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.site import free_port
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import BrokerSettings, ListenerSettings

__all__ = ["main", "per_lamp_ms"]


def per_lamp_ms(lamps: int, each: int) -> tuple[float, float, float]:
    """Milliseconds per lamp: filling the broker in one batch, then ``each`` one at a time, then
    ``each`` in one batch at the same size."""
    if each < 1 or lamps < 3 * each:
        raise ValueError(f"need each >= 1 and lamps >= 3 x each, got lamps={lamps}, each={each}")
    with tempfile.TemporaryDirectory(prefix="touchlamp-lamp-creation-") as scratch:
        broker = ManagedBroker(
            BrokerSettings(
                state_dir=Path(scratch) / "broker",
                listeners=[ListenerSettings(address="127.0.0.1", port=free_port())],
            ),
            stop_with_parent=True,
        )
        broker.start()
        try:
            with broker.admin(timeout=600.0) as admin:
                fill = lamps - 2 * each
                started = time.monotonic()
                admin.add_lamps([f"lamp-{index:06d}" for index in range(fill)])
                fill_ms = (time.monotonic() - started) * 1000 / fill
                started = time.monotonic()
                for index in range(fill, fill + each):
                    admin.add_lamp(f"lamp-{index:06d}")
                one_ms = (time.monotonic() - started) * 1000 / each
                started = time.monotonic()
                admin.add_lamps([f"lamp-{index:06d}" for index in range(fill + each, lamps)])
                batch_ms = (time.monotonic() - started) * 1000 / each
        finally:
            broker.stop()
    return fill_ms, one_ms, batch_ms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lamp_creation", description=__doc__)
    parser.add_argument("--lamps", type=int, default=1000, help="lamps in the end (default 1000)")
    parser.add_argument(
        "--each", type=int, default=50, help="lamps one at a time, and in the last batch (50)"
    )
    args = parser.parse_args(argv)
    if args.each < 1 or args.lamps < 3 * args.each:
        parser.error(
            f"--each must be at least 1 and --lamps at least 3 x --each, got --lamps "
            f"{args.lamps} --each {args.each}"
        )
    fill_ms, one_ms, batch_ms = per_lamp_ms(args.lamps, args.each)
    fill = args.lamps - 2 * args.each
    print(f"add_lamps, {fill:,} lamps in one call: {fill_ms:.1f} ms per lamp")
    print(
        f"at {fill:,} lamps: add_lamp one at a time {one_ms:.1f} ms per lamp ({args.each}); "
        f"baseline add_lamps {batch_ms:.1f} ms per lamp ({args.each} in one call); "
        f"ratio {one_ms / batch_ms:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
