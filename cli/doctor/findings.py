"""What a check found: OK, FAIL with the fix to try, or SKIP, and the line the user reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TextIO

__all__ = ["Finding", "Outcome", "fail", "ok", "print_findings", "skip"]


class Outcome(Enum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One check's result; ``fix`` is the thing to try, for a failure."""

    outcome: Outcome
    text: str
    fix: str | None = None

    def line(self) -> str:
        head = f"{self.outcome.value:<4} {self.text}"
        return head if self.fix is None else f"{head}\n     → fix: {self.fix}"


def ok(text: str) -> Finding:
    return Finding(outcome=Outcome.OK, text=text)


def fail(text: str, fix: str) -> Finding:
    return Finding(outcome=Outcome.FAIL, text=text, fix=fix)


def skip(text: str) -> Finding:
    return Finding(outcome=Outcome.SKIP, text=text)


def print_findings(findings: Iterable[Finding], out: TextIO) -> int:
    """Print each finding as it comes (a slow check shows where it waits); the failures' count."""
    failures = 0
    for finding in findings:
        print(finding.line(), file=out, flush=True)
        failures += finding.outcome is Outcome.FAIL
    return failures
