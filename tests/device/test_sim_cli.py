"""``touchlamp sim --lamps N`` as a user meets it: its own name in its messages, wording for more
than two lamps, and a default state directory of its own (a demo beside it keeps its lamps)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.device.test_demo import TOUCHLAMP, _read_until, _reaped
from tests.support.waiting import WAIT


def test_sim_speaks_for_itself_and_keeps_out_of_the_demos_state() -> None:
    # A short folder: the lamps' control sockets live under it, and a Unix socket's path is
    # limited to 107 bytes (pytest's tmp_path for this test is longer than that allows).
    with tempfile.TemporaryDirectory(prefix="tl-sim-") as short:
        check_sim(Path(short))


def check_sim(tmp_path: Path) -> None:
    environment = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    environment.pop("STATE_DIRECTORY", None)  # systemd's, which would take precedence
    process = subprocess.Popen(
        [str(TOUCHLAMP), "sim", "--lamps", "3", "--web-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    with _reaped(process):
        assert process.stdout is not None
        sim_dir = tmp_path / "state" / "touchlamp" / "sim"
        assert _read_until(process.stdout, "starting") == f"touchlamp sim: starting in {sim_dir}\n"
        assert _read_until(process.stdout, "open http").startswith("touchlamp sim: open http")
        assert next(process.stdout) == (
            "  tap a lamp to send a touch to the others, hold it to choose its colour\n"
        )
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=WAIT)
    assert process.returncode == 0
    assert rest.splitlines()[-1] == "touchlamp sim: stopped"
    assert (sim_dir / "demo.json").is_file()
    assert not (tmp_path / "state" / "touchlamp" / "demo").exists()
