"""What every benchmark gets: quick or full, a directory of its own, and where to print."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchContext"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchContext:
    """``quick``: the CI smoke settings; ``tiny``: the test suite's even smaller ones (format
    and accounting only — its figures mean nothing)."""

    quick: bool
    directory: Path
    say: Callable[[str], None]
    tiny: bool = False
    # The broker's persistence setting (config/broker.py): True only for --save-every-change.
    save_every_change: bool = False
    # --lamps N: the fleet's size instead of its full/quick/tiny default.
    lamps: int | None = None

    def pick(self, *, full: int, quick: int, tiny: int | None = None) -> int:
        if self.tiny and tiny is not None:
            return tiny
        return quick if self.quick or self.tiny else full

    def pick_seconds(self, *, full: float, quick: float, tiny: float | None = None) -> float:
        if self.tiny and tiny is not None:
            return tiny
        return quick if self.quick or self.tiny else full
