"""``python -m bench.spread --runs N [python -m bench's options]``: the range of every figure
over N runs (BENCHMARKS.md quotes ranges, not one run: a shared virtual machine varies).

Runs ``python -m bench --json FILE`` with the options given N times, one after the other, then
prints for each figure the lowest and highest value, baseline and ratio seen, e.g.::

    python -m bench.spread --runs 3 --quick --only throughput,scaleout
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Spread", "main", "spreads"]


@dataclass(slots=True)
class Spread:
    """One figure's values over the runs, with its baseline's and their ratio's."""

    bench: str
    label: str
    unit: str
    baseline_label: str
    baseline_unit: str
    values: list[float] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def line(self) -> str:
        ratio = f"ratio {_range(self.ratios)}" if self.ratios else "ratio n/a"
        return (
            f"[{self.bench}] {self.label}: {_range(self.values)} {self.unit}  |  baseline "
            f"{self.baseline_label}: {_range(self.baselines)} {self.baseline_unit}  |  {ratio}"
            f"  ({len(self.values)} runs)"
        )


def spreads(documents: Sequence[dict[str, object]]) -> list[Spread]:
    """Group the results of ``--json`` documents by benchmark and figure, in first-seen order."""
    found: dict[tuple[str, str], Spread] = {}
    for document in documents:
        results = document.get("results")
        if not isinstance(results, list):
            raise TypeError("not a `python -m bench --json` document: no 'results' list")
        for result in results:
            figure, baseline = result["figure"], result["baseline"]
            key = (str(result["bench"]), str(figure["label"]))
            spread = found.setdefault(
                key,
                Spread(
                    bench=key[0],
                    label=key[1],
                    unit=str(figure["unit"]),
                    baseline_label=str(baseline["label"]),
                    baseline_unit=str(baseline["unit"]),
                ),
            )
            spread.values.append(float(figure["value"]))
            spread.baselines.append(float(baseline["value"]))
            if result.get("ratio") is not None:
                spread.ratios.append(float(result["ratio"]))
    return list(found.values())


def _range(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return _number(low) if low == high else f"{_number(low)}-{_number(high)}"


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.spread",
        description="Run `python -m bench` N times; print each figure's range.",
    )
    parser.add_argument("--runs", type=int, required=True, help="how many runs (at least 2)")
    args, bench_args = parser.parse_known_args(argv)
    if args.runs < 2:  # a range needs two
        parser.error(f"--runs must be at least 2 for a range, got {args.runs}")
    if "--json" in bench_args:
        parser.error("--json is python -m bench.spread's own; leave it out")
    documents: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="touchlamp-bench-spread-") as scratch:
        for run in range(1, args.runs + 1):
            print(
                f"\n==== run {run} of {args.runs}: python -m bench {' '.join(bench_args)}",
                flush=True,
            )
            output = Path(scratch) / f"run-{run}.json"
            done = subprocess.run(
                [sys.executable, "-m", "bench", *bench_args, "--json", str(output)], check=False
            )
            if done.returncode != 0 or not output.exists():
                print(f"run {run} failed (exit {done.returncode}); stopping", file=sys.stderr)
                return 1
            documents.append(json.loads(output.read_text(encoding="utf-8")))
    print(f"\nOver {args.runs} runs of python -m bench {' '.join(bench_args)}:")
    for spread in spreads(documents):
        print(spread.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
