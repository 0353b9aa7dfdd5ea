"""What a benchmark reports: a figure, the baseline measured in the same run, their ratio, the
target and whether it was met — printed as a line while running, as a table at the end, and as
JSON (``--json FILE``)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from touchlamp.config.broker import BrokerSettings

__all__ = ["Measure", "Result", "format_line", "format_table", "machine", "write_json"]


@dataclass(frozen=True, slots=True)
class Measure:
    """One number with its unit and what it is (``"p99 touch→light"``, ``12.3``, ``"ms"``)."""

    label: str
    value: float
    unit: str

    def __str__(self) -> str:
        return f"{_number(self.value)} {self.unit}"


@dataclass(frozen=True, slots=True)
class Result:
    """One row of the final table.

    ``ratio`` is figure ÷ baseline. ``met`` is ``None`` where the benchmark has no target (it
    reports and explains, e.g. scale-out on two cores). ``details`` carries everything else
    measured (counts, CPU, memory), for the JSON file and BENCHMARKS.md.
    """

    bench: str
    figure: Measure
    baseline: Measure
    target: str
    met: bool | None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline.value == 0:
            return None
        return self.figure.value / self.baseline.value

    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "(reported)"}[self.met]


def format_line(result: Result) -> str:
    ratio = "n/a" if result.ratio is None else f"{result.ratio:.2f}x"
    return (
        f"[{result.bench}] {result.figure.label}: {result.figure}  |  baseline "
        f"{result.baseline.label}: {result.baseline}  |  ratio {ratio}  |  target "
        f"{result.target}: {result.verdict()}"
    )


def format_table(results: Sequence[Result]) -> str:
    header = ("bench", "figure", "value", "baseline", "value", "ratio", "target", "verdict")
    rows = [
        (
            r.bench,
            r.figure.label,
            str(r.figure),
            r.baseline.label,
            str(r.baseline),
            "n/a" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            r.verdict(),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """Where the figures came from: cores, CPU model, Python, Mosquitto."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "mosquitto": _mosquitto_version(),
    }


def write_json(path: Path, *, results: Sequence[Result], quick: bool, seconds: float) -> None:
    document = {
        "machine": machine(),
        "quick": quick,
        "seconds": round(seconds, 1),
        "results": [
            {
                **asdict(result),
                "ratio": result.ratio,
                "verdict": result.verdict(),
            }
            for result in results
        ],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def _mosquitto_version() -> str:
    try:
        # `mosquitto -h` prints its version and exits 3; there is no --version.
        completed = subprocess.run(
            [str(BrokerSettings.model_fields["mosquitto_path"].default), "-h"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"mosquitto version (\S+)", completed.stdout + completed.stderr)
    return found.group(1) if found else "unknown"


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
