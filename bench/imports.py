"""``python -m bench.imports``: where a simulated lamp's memory goes, import by import
(BENCHMARKS.md, benchmark 4).

A fresh interpreter imports what ``touchlamp device run --simulate`` imports, in that order, and
reads its own ``VmRSS`` after each step. A second one imports only the libraries the project is
given (paho-mqtt, pydantic-settings, gpiozero with the simulator's mock pins) and the standard
library's sqlite3: the least any lamp built on them can take, whatever its own code. MB are
10^6 bytes, as in the footprint benchmark. It runs twice: the first run writes the modules'
bytecode (into a cache directory of its own, as ``bench/footprint.py`` does), the second is the
one measured, since a lamp installed by pip never compiles on import. What the running lamp adds
on top (threads, SQLite, paho's buffers) is the footprint benchmark's RSS minus the last row:
``python -m bench --only footprint``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEPENDENCY_STEPS", "STEPS", "Step", "main", "measure"]


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    modules: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step("bare Python", ()),
    Step("paho.mqtt.client (pulls in ssl: OpenSSL's libraries)", ("paho.mqtt.client",)),
    Step("pydantic, pydantic_settings", ("pydantic", "pydantic_settings")),
    Step(
        "touchlamp.config.device, touchlamp.protocol",
        ("touchlamp.config.device", "touchlamp.protocol"),
    ),
    Step("gpiozero", ("gpiozero",)),
    Step(
        "the lamp (touchlamp.device.cli: agent, core, link, outbox, hardware)",
        ("touchlamp.device.cli",),
    ),
    Step(
        "the simulator (touchlamp.device.simulate: mock pins, page)", ("touchlamp.device.simulate",)
    ),
)

DEPENDENCY_STEPS: tuple[Step, ...] = (
    Step("bare Python", ()),
    Step("paho.mqtt.client (with ssl)", ("paho.mqtt.client",)),
    Step("pydantic, pydantic_settings", ("pydantic", "pydantic_settings")),
    Step("gpiozero with its mock pins", ("gpiozero", "gpiozero.pins.mock")),
    Step("sqlite3", ("sqlite3",)),
)

# Runs in the child: imports each step's modules, prints VmRSS (kB) after each as JSON.
_CHILD = """
import importlib, json, sys
def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")
after = []
for modules in json.loads(sys.argv[1]):
    for name in modules:
        importlib.import_module(name)
    after.append(rss_kib())
print(json.dumps(after))
"""


def measure(steps: Sequence[Step] = STEPS) -> list[tuple[Step, int]]:
    """RSS (KiB) after each step, in a fresh interpreter with the bytecode already compiled."""
    plan = json.dumps([list(step.modules) for step in steps])
    with tempfile.TemporaryDirectory(prefix="touchlamp-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        readings: list[int] = []
        for _run in range(2):  # the first compiles, the second is measured
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, plan],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the import run failed:\n{done.stderr.strip()[-2000:]}")
            readings = [int(value) for value in json.loads(done.stdout)]
    return list(zip(steps, readings, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__)
    parser.parse_args(argv)
    _print(measure())
    print()
    print("the given dependencies alone:")
    _print(measure(DEPENDENCY_STEPS))
    return 0


def _print(rows: list[tuple[Step, int]]) -> None:
    print(f"{'import':<72} {'RSS after':>10} {'added':>9}")
    previous: int | None = None
    for step, kib in rows:
        added = "" if previous is None else f"{_mb(kib - previous):.1f} MB"
        print(f"{step.label:<72} {_mb(kib):>7.1f} MB {added:>9}")
        previous = kib


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


if __name__ == "__main__":
    raise SystemExit(main())
