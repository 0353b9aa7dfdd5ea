"""The small measuring scripts under bench/ that BENCHMARKS.md names beside its figures:
``bench.fsync``, ``bench.imports``, ``bench.saves``, ``bench.spread``, ``bench.handoff``,
``bench.seen_writes``, ``bench.lamp_creation``, ``bench.two_hops``; and ``bench.measure_rate``,
the quick relay rate measurement."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import (
    fsync,
    handoff,
    imports,
    lamp_creation,
    measure_rate,
    saves,
    seen_writes,
    spread,
    two_hops,
)
from bench.results import Measure, Result, write_json


def test_fsync_times_every_write_and_prints_percentiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    times = fsync.fsync_latencies(tmp_path, 20)
    assert len(times) == 20
    assert all(seconds > 0 for seconds in times)
    assert list(tmp_path.iterdir()) == []  # its file is gone
    assert fsync.main(["--dir", str(tmp_path), "--count", "5"]) == 0
    assert "p50" in capsys.readouterr().out


def test_fsync_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        fsync.main(["--dir", str(tmp_path / "nowhere")])
    assert exited.value.code == 2


def test_imports_reads_rss_after_each_step_in_a_fresh_interpreter() -> None:
    steps = (imports.Step("bare", ()), imports.Step("pydantic", ("pydantic",)))
    (bare, bare_kib), (heavy, heavy_kib) = imports.measure(steps)
    assert (bare.label, heavy.label) == ("bare", "pydantic")
    assert 0 < bare_kib < heavy_kib  # pydantic-core's library alone is megabytes


def test_saves_counts_mosquittos_save_lines_per_broker_log(tmp_path: Path) -> None:
    broker = tmp_path / "throughput" / "broker"
    broker.mkdir(parents=True)
    (broker / "mosquitto.log").write_text(
        "1764900000: Saving in-memory database to /x/mosquitto.db.\n"
        "1764900000: New client connected from 127.0.0.1\n"
        "1764900001: Saving in-memory database to /x/mosquitto.db.\n"
    )
    (broker / "mosquitto.db").write_bytes(b"\0" * 1234)
    assert saves.count_saves(tmp_path) == {"throughput/broker/mosquitto.log": 2}
    assert saves.database_sizes(tmp_path) == {"throughput/broker/mosquitto.db": 1234}


def _document(path: Path, glows: float, one_hop: float) -> dict[str, object]:
    result = Result(
        bench="throughput",
        figure=Measure("glows/s", glows, "glows/s"),
        baseline=Measure("one hop", one_hop, "msg/s"),
        target="≥ 0.50 x one hop",
        met=False,
    )
    write_json(path, results=[result], quick=True, seconds=1.0)
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def test_spread_gives_each_figures_range_over_the_runs(tmp_path: Path) -> None:
    documents = [
        _document(tmp_path / "1.json", 4000.0, 10000.0),
        _document(tmp_path / "2.json", 5000.0, 8000.0),
    ]
    [found] = spread.spreads(documents)
    assert found.values == [4000.0, 5000.0]
    assert found.line() == (
        "[throughput] glows/s: 4,000-5,000 glows/s  |  baseline one hop: 8,000-10,000 msg/s  |  "
        "ratio 0.40-0.62  (2 runs)"
    )


def test_spread_needs_two_runs() -> None:
    with pytest.raises(SystemExit) as exited:
        spread.main(["--runs", "1", "--quick"])
    assert exited.value.code == 2


_ROOT = Path(__file__).resolve().parents[2]
_HANG_GUARD_SECONDS = 300  # a hang, not a timing: none of these takes more than seconds


def _run_script(*argv: str) -> str:
    """``python -m bench.X ARGS`` as BENCHMARKS.md names it; its output."""
    completed = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_handoff_times_each_item_from_one_thread_to_a_sleeping_one() -> None:
    times = handoff.handoff_times(5)
    assert len(times) == 5
    assert all(seconds > 0 for seconds in times)
    output = _run_script("bench.handoff", "--count", "3")
    assert re.search(
        r"^thread hand-off \(3\): p50 [\d.]+ µs, p99 [\d.]+ µs", output, re.MULTILINE
    ), output
    assert re.search(r"^baseline, same thread \(3\): p50 [\d.]+ µs", output, re.MULTILINE), output
    assert re.search(r"^ratio p50 \d+x$", output, re.MULTILINE), output


def test_handoff_refuses_no_count() -> None:
    with pytest.raises(SystemExit) as exited:
        handoff.main(["--count", "0"])
    assert exited.value.code == 2


def test_two_hops_times_touches_through_a_no_work_relay_against_one_hop() -> None:
    output = _run_script("bench.two_hops", "--count", "3")
    assert re.search(r"^one hop: +p50 [\d.]+ ms, p99 [\d.]+ ms$", output, re.MULTILINE), output
    assert re.search(
        r"^two hops, a no-work relay: +p50 [\d.]+ ms, p99 [\d.]+ ms  \([\d.]+x one hop at p99\)$",
        output,
        re.MULTILINE,
    ), output


def test_two_hops_refuses_no_count() -> None:
    with pytest.raises(SystemExit) as exited:
        two_hops.main(["--count", "0"])
    assert exited.value.code == 2


def test_seen_writes_times_both_stores_write_by_write_and_leaves_nothing(tmp_path: Path) -> None:
    shipped, automatic = seen_writes.write_times(tmp_path, 4, pause_every=2)
    assert (len(shipped), len(automatic)) == (4, 4)
    assert all(seconds > 0 for seconds in shipped + automatic)
    assert list(tmp_path.iterdir()) == []  # both stores are gone
    output = _run_script("bench.seen_writes", "--dir", str(tmp_path), "--count", "3")
    assert "shipped (checkpoint when glows pause): p50" in output, output
    assert "baseline, SQLite's automatic checkpoint: p50" in output, output
    assert re.search(r"writes over 2 ms: shipped \d+, automatic \d+ of 3$", output, re.MULTILINE), (
        output
    )


def test_seen_writes_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        seen_writes.main(["--dir", str(tmp_path / "nowhere")])
    assert exited.value.code == 2


def test_lamp_creation_creates_every_lamp_on_a_real_broker_and_prints_per_lamp_costs() -> None:
    output = _run_script("bench.lamp_creation", "--lamps", "3", "--each", "1")
    assert re.search(
        r"^add_lamps, 1 lamps in one call: [\d.]+ ms per lamp$", output, re.MULTILINE
    ), output
    assert re.search(
        r"^at 1 lamps: add_lamp one at a time [\d.]+ ms per lamp \(1\); baseline add_lamps "
        r"[\d.]+ ms per lamp \(1 in one call\); ratio [\d.]+x$",
        output,
        re.MULTILINE,
    ), output


def test_lamp_creation_refuses_too_few_lamps_for_its_three_steps() -> None:
    with pytest.raises(SystemExit) as exited:
        lamp_creation.main(["--lamps", "2", "--each", "1"])
    assert exited.value.code == 2


@pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="needs Debian's mosquitto-clients",
)
def test_measure_rate_forwards_every_touch_once_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    measure_rate.main(["--touches", "200", "--senders", "2"])
    out = capsys.readouterr().out
    assert "200/200 touches forwarded (0 duplicates)" in out, out
    assert "touches/s = glows/s (2 sending lamps, as fast as possible, store SqliteStore)" in out
