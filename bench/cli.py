"""``python -m bench``: run the benchmarks, print each figure with its baseline, then a table.

    python -m bench [--quick] [--only NAME[,NAME…]] [--json FILE] [--keep DIR]

Each benchmark starts its own Mosquitto (the project's rendered configuration, a free loopback
port) in a directory of its own, under a temporary directory unless ``--keep`` names one (then
the broker's, relays' and lamps' logs stay there). A missed target is reported, not an error:
the exit code is 0 when every benchmark ran, 1 when one failed to run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import fleet, footprint, homeassistant, latency, scaleout, throughput
from bench.context import BenchContext
from bench.results import Result, format_line, format_table, machine, write_json

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS: dict[str, tuple[str, Callable[[BenchContext], list[Result]]]] = {
    "latency": ("touch → light, through broker and relay", latency.run),
    "throughput": ("relay throughput and memory over a burst", throughput.run),
    "fleet": ("many lamps connected, a steady stream of touches", fleet.run),
    "footprint": ("one lamp's idle CPU, memory and start → online", footprint.run),
    "scaleout": ("two relays on the shared subscription against one", scaleout.run),
    "homeassistant": ("touch → light with a home broker up and black-holed", homeassistant.run),
}


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or repr(text)}: choose from "
            + ", ".join(BENCHMARKS)
        )
    return names


def _lamp_count(text: str) -> int:
    try:
        count = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        count = 0
    if count < 2 or count % 2:
        raise argparse.ArgumentTypeError(
            f"--lamps {text!r}: give an even number of at least 2 (the fleet's lamps are in pairs)"
        )
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="touchlamp's benchmarks, each against its baseline measured in the same run "
        "(BENCHMARKS.md explains them and records the figures).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller settings: the whole suite in under 2 minutes"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the test suite's smoke settings: exercises everything, figures mean nothing",
    )
    parser.add_argument(
        "--only",
        type=_names,
        action="extend",
        metavar="NAME[,NAME…]",
        help=f"run only these ({', '.join(BENCHMARKS)}); may be repeated",
    )
    parser.add_argument(
        "--save-every-change",
        action="store_true",
        help="Mosquitto saving its database after every change (limits.save_every_change, "
        "not the default) instead of about every 2 s: shows what that setting costs",
    )
    parser.add_argument(
        "--lamps",
        type=_lamp_count,
        metavar="N",
        help="the fleet benchmark's number of lamps (default: 1,000; --quick 200), e.g. 10000",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work (and leave logs) here, not in a temp dir"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names: list[str] = args.only or list(BENCHMARKS)
    info = machine()
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.save_every_change:
        mode += ", Mosquitto saving after every change (not the default)"
    print(
        f"touchlamp benchmarks ({mode}) on {info['nproc']} x {info['cpu_model']}, Python "
        f"{info['python']}, Mosquitto {info['mosquitto']}",
        flush=True,
    )
    started = time.monotonic()
    results: list[Result] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="touchlamp-bench-") as scratch:
        root = args.keep or Path(scratch)
        for name in names:
            title, bench = BENCHMARKS[name]
            print(f"\n== {name}: {title}", flush=True)
            context = BenchContext(
                quick=args.quick,
                tiny=args.tiny,
                save_every_change=args.save_every_change,
                lamps=args.lamps,
                directory=root / name,
                say=lambda line: print(line, flush=True),
            )
            bench_started = time.monotonic()
            try:
                produced = bench(context)
            except Exception:  # noqa: BLE001  one benchmark failing must not hide the others
                traceback.print_exc()
                failed.append(name)
                continue
            for result in produced:
                print(format_line(result), flush=True)
            print(f"  ({time.monotonic() - bench_started:.0f} s)", flush=True)
            results.extend(produced)
    seconds = time.monotonic() - started
    print(f"\n{format_table(results)}\n\n{len(results)} figures in {seconds:.0f} s", flush=True)
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr, flush=True)
    if args.json is not None:
        write_json(args.json, results=results, quick=args.quick, seconds=seconds)
    return 1 if failed else 0
