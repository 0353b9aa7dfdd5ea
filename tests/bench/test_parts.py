"""The benchmarks' pure parts: percentiles, the result table, /proc readings, the latency
benchmark's watch on lamp B's frames, the garbage-collection pause's command."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.latency import GlowWatch
from bench.procfs import cpu_percent, sample
from bench.results import Measure, Result, format_line, format_table
from bench.stats import percentile, summarize
from tests.support.broker import BrokerFixture
from touchlamp.device.looks import Rgb


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


# ---- the latency benchmark's watch on lamp B (issue 19) -----------------------------------------

SENDER = "#ff3300"
DARK = Rgb(0.0, 0.0, 0.0)
LIT = Rgb(1.0, (0x33 / 255) ** 2.2, 0.0)  # the sender's colour at full, as PWM duty
DIM = Rgb(0.01, (0.01 * 0x33 / 255) ** 2.2, 0.0)  # the same hue, too dim to count as shown
B_OWN = Rgb(0.0, (0x66 / 255) ** 2.2, 1.0)  # lamp B's own colour


def _watch() -> GlowWatch:
    return GlowWatch(SENDER, gamma=2.2)


def test_the_rise_is_timed_from_the_first_frame_that_shows_the_colour() -> None:
    watch = _watch()
    watch.saw(DARK, 0.5)
    watch.arm()
    for shown, at in [(DARK, 1.0), (DIM, 1.1), (B_OWN, 1.2), (LIT, 1.3), (LIT, 1.4)]:
        watch.saw(shown, at)
    assert watch.wait_lit(0.0) == 1.3


def test_dark_frames_before_the_glow_rises_do_not_free_the_next_touch() -> None:
    # The old benchmark took the dark frame that starts a glow's rise for "dark again" and
    # sent every other touch while B still showed the previous glow.
    watch = _watch()
    watch.saw(DARK, 0.5)
    watch.arm()
    watch.saw(DARK, 1.0)  # the glow's first frame: the rise starts from dark
    assert not watch.wait_dark(0.0)
    watch.saw(LIT, 1.001)
    assert not watch.wait_dark(0.0)
    with pytest.raises(RuntimeError, match=r"not dark: each touch must start from a dark lamp"):
        watch.arm()
    watch.saw(DIM, 1.1)  # fading: not dark yet
    assert not watch.wait_dark(0.0)
    watch.saw(DARK, 1.2)
    assert watch.wait_dark(0.0)
    watch.arm()  # the next touch may go
    assert watch.wait_lit(0.0) is None


def test_a_touch_before_lamp_b_drew_anything_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"lamp B shows None before the touch"):
        _watch().arm()


def test_frames_before_arming_count_for_nothing() -> None:
    watch = _watch()
    watch.saw(LIT, 1.0)
    watch.saw(DARK, 1.1)
    assert watch.wait_lit(0.0) is None
    assert not watch.wait_dark(0.0)


def test_a_frame_on_lamp_bs_thread_wakes_the_waiting_benchmark() -> None:
    watch = _watch()
    watch.saw(DARK, 0.5)
    watch.arm()

    def draw() -> None:  # lamp B's thread, after its frames
        watch.saw(LIT, 2.0)
        watch.saw(DARK, 2.1)

    drawer = threading.Thread(target=draw)
    drawer.start()
    try:
        assert watch.wait_lit(30.0) == 2.0
        assert watch.wait_dark(30.0)
    finally:
        drawer.join()


def test_gc_pause_times_a_lamp_process_full_collection_before_and_after_freezing() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.gc_pause"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = re.fullmatch(
        r"lamp process: ([\d,]+) tracked objects; full collection [\d.]+ ms, "
        r"after gc\.freeze\(\) [\d.]+ ms \(([\d,]+) frozen\)\n",
        completed.stdout,
    )
    assert found is not None, completed.stdout + completed.stderr
    tracked, frozen = (int(group.replace(",", "")) for group in found.groups())
    assert 0 < frozen <= tracked


def test_lamp_a_of_the_latency_benchmark_ends_with_the_benchmark(tmp_path: Path) -> None:
    """bench/tap_lamp.py ends when its stdin closes — here before its lamp could come online
    (nothing listens on its port) — so it never outlives a benchmark that died."""
    password = tmp_path / "password"
    password.write_text("p" * 22, encoding="utf-8")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        args = [
            "bench.tap_lamp", "--port", str(port), "--username", "lamp-a",
            "--password-file", str(password), "--root", "touchlamp",
            "--state-dir", str(tmp_path / "lamp-a"), "--color", "#ff3300",
        ]  # fmt: skip
        _ends_when_its_stdin_closes(args)


def test_a_benchmark_peer_ends_when_its_stdin_closes(broker: BrokerFixture, tmp_path: Path) -> None:
    """bench/peer.py's roles end with their parent, however it ends: its pipe to their stdin
    closes when it dies (before, a SIGKILLed benchmark left them running)."""
    password = tmp_path / "password"
    password.write_text(broker.add_lamp("lamp-a"), encoding="utf-8")
    args = [
        "bench.peer", "lamp", "--host", broker.host, "--port", str(broker.port),
        "--username", "lamp-a", "--password-file", str(password), "--root", "touchlamp",
    ]  # fmt: skip
    _ends_when_its_stdin_closes(args)


def _ends_when_its_stdin_closes(module_and_args: list[str]) -> None:
    """``python -m MODULE ARGS`` started with a pipe to its stdin, which is then closed: it
    must end, and cleanly."""
    child = subprocess.Popen(
        [sys.executable, "-m", *module_and_args],
        stdin=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=20) == 0
    finally:
        child.kill()
        child.wait()
