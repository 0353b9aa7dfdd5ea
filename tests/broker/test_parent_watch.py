"""``ParentWatch`` (broker/parent_watch.py) on its own: a launcher process killed with SIGKILL.

The common case — Mosquitto stopped with SIGTERM — is in test_launcher.py and
test_nothing_left_behind.py; here the watched process ignores SIGTERM, and a launcher dies
before it had anything to watch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.broker.test_launcher import _alive
from tests.support.waiting import wait_until

_LAUNCHER = """
import subprocess, sys, time
from touchlamp.broker.parent_watch import ParentWatch
watch = ParentWatch(open(sys.argv[1], "ab"))
if sys.argv[2] == "watch":
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time\\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\nprint(flush=True)\\ntime.sleep(600)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    stubborn.stdout.readline()  # its SIGTERM is ignored from now on
    watch.watch(stubborn.pid)
    print(watch.pid, stubborn.pid, flush=True)
else:
    print(watch.pid, flush=True)
time.sleep(600)
"""


def _launch(log: Path, mode: str) -> tuple[subprocess.Popen[str], list[int]]:
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(log), mode], stdout=subprocess.PIPE, text=True
    )
    assert launcher.stdout is not None
    with launcher.stdout:
        pids = [int(word) for word in launcher.stdout.readline().split()]
    return launcher, pids


def test_a_process_that_ignores_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "watch.log"
    launcher, (watcher, stubborn) = _launch(log, "watch")
    try:
        launcher.kill()
        launcher.wait()
        wait_until(lambda: not _alive(stubborn), "the stubborn process killed")
        wait_until(lambda: not _alive(watcher), "the watcher gone")
        said = log.read_text()
        assert "ended: stopping mosquitto" in said
        assert "ignored SIGTERM for 3 s: killing it" in said
    finally:
        for pid in (stubborn, watcher):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_watcher_whose_launcher_died_before_watching_anything_ends(tmp_path: Path) -> None:
    log = tmp_path / "watch.log"
    launcher, (watcher,) = _launch(log, "idle")
    launcher.kill()
    launcher.wait()
    wait_until(lambda: not _alive(watcher), "the watcher gone")
    assert log.read_text() == ""  # nothing to stop, nothing said
