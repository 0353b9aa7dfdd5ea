"""The small measuring scripts under bench/ that BENCHMARKS.md names beside its figures:
``bench.fsync``, ``bench.imports``, ``bench.saves``, ``bench.spread``; and
``bench.measure_rate``, the quick relay rate measurement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import fsync, imports, measure_rate, saves, spread
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
