"""``python -m bench.saves [python -m bench's options]``: run benchmarks and count how often
Mosquitto saved its database meanwhile (BENCHMARKS.md, "The broker saves about every 2 s").

Runs ``python -m bench`` with the options given, its work kept in a temporary directory, then
counts the "Saving in-memory database" lines (Mosquitto logs one per save) in every broker log
each benchmark left, and prints the size of the database each broker saved last (what one
save writes), e.g.::

    python -m bench.saves --only throughput --save-every-change
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import cli

__all__ = ["SAVE_LINE", "count_saves", "database_sizes", "main"]

SAVE_LINE = "Saving in-memory database"


def count_saves(directory: Path) -> dict[str, int]:
    """Saves per broker log (``mosquitto.log``) under ``directory``, by path relative to it."""
    counts: dict[str, int] = {}
    for log in sorted(directory.rglob("mosquitto.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        counts[str(log.relative_to(directory))] = sum(
            1 for line in text.splitlines() if SAVE_LINE in line
        )
    return counts


def database_sizes(directory: Path) -> dict[str, int]:
    """Bytes of each saved broker database (``mosquitto.db``) under ``directory``."""
    return {
        str(database.relative_to(directory)): database.stat().st_size
        for database in sorted(directory.rglob("mosquitto.db"))
    }


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "--keep" in arguments or any(arg.startswith("--keep=") for arg in arguments):
        print("python -m bench.saves: --keep is its own (a temporary directory)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="touchlamp-bench-saves-") as scratch:
        status = cli.main([*arguments, "--keep", scratch])
        counts = count_saves(Path(scratch))
        sizes = database_sizes(Path(scratch))
    print('\nMosquitto\'s saves ("Saving in-memory database" lines in its log):')
    for log, saves in counts.items():
        print(f"  {log}: {saves:,}")
    if not counts:
        print("  (no broker log: did a benchmark run?)")
    for database, size in sizes.items():
        print(f"  {database}: {size / 1e6:.2f} MB at the end (one save writes it all)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
