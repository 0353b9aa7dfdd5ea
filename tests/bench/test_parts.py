"""The benchmarks' pure parts: percentiles, the result table, /proc readings."""

from __future__ import annotations

import os

import pytest

from bench.procfs import cpu_percent, sample
from bench.results import Measure, Result, format_line, format_table
from bench.stats import percentile, summarize


def test_percentiles_are_nearest_rank_real_samples() -> None:
    samples = [float(value) for value in range(1, 101)]  # 1 … 100
    assert percentile(samples, 0.50) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 0.99) == 3.0
    summary = summarize([0.002, 0.001, 0.003])
    assert (summary.count, summary.p50, summary.max) == (3, 0.002, 0.003)
    assert summary.as_ms()["p99_ms"] == 3.0


def test_a_percentile_of_nothing_says_so() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)


def _result(value: float, baseline: float, *, met: bool | None) -> Result:
    return Result(
        bench="latency",
        figure=Measure("touch→light p99", value, "ms"),
        baseline=Measure("one hop p99", baseline, "ms"),
        target="≤ 3 x one hop p99",
        met=met,
    )


def test_a_line_and_the_table_show_figure_baseline_ratio_and_verdict() -> None:
    missed = _result(12.0, 2.0, met=False)
    assert format_line(missed) == (
        "[latency] touch→light p99: 12.0 ms  |  baseline one hop p99: 2.00 ms  |  ratio 6.00x"
        "  |  target ≤ 3 x one hop p99: MISSED"
    )
    table = format_table([missed, _result(1.0, 0.0, met=None)]).splitlines()
    assert table[0].split() == [
        "bench", "figure", "value", "baseline", "value", "ratio", "target", "verdict",
    ]  # fmt: skip
    assert table[2].endswith("MISSED")
    assert "n/a" in table[3]
    assert table[3].endswith("(reported)")


def test_proc_readings_of_this_process() -> None:
    first = sample(os.getpid())
    sum(range(200_000))  # some CPU
    last = sample(os.getpid())
    assert 0 < last.rss_bytes <= last.hwm_bytes
    assert cpu_percent(first, last) >= 0.0
    with pytest.raises(ValueError, match="two processes"):
        cpu_percent(first, sample(os.getppid()))
