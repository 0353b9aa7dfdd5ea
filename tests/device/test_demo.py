"""``touchlamp demo`` as a user runs it: a subprocess, its page's API, SIGTERM, nothing left.

The demo is started twice on the same state directory: the second run finds the lamps it
registered and paired the first time and works just the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tests.e2e.world import HOLD_SECONDS, same_hue
from tests.support.waiting import WAIT, wait_until
from touchlamp.device.looks import Rgb

TOUCHLAMP = Path(sys.executable).with_name("touchlamp")


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc: no psutil needed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_using(directory: Path) -> list[str]:
    """Command lines that mention ``directory`` (a Mosquitto started with its config)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in command and _alive(int(entry.name)):
            found.append(command)
    return found


def _read_until(stream: IO[str], marker: str) -> str:
    seen = []
    for line in stream:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"the demo ended without printing {marker!r}: {''.join(seen)}")


def _start(*args: str) -> subprocess.Popen[str]:
    # -v: the demo's log (stderr) is shown when a test fails. A tap (press, then release) from
    # this test must not become a hold on a loaded machine, so holds take longer here.
    environment = {**os.environ, "TOUCHLAMP_DEVICE_LOOKS__HOLD_SECONDS": str(HOLD_SECONDS)}
    return subprocess.Popen(
        [str(TOUCHLAMP), "-v", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


@contextmanager
def _reaped(process: subprocess.Popen[str]) -> Iterator[None]:
    """Kill ``process`` if the block fails (showing its log), and close its pipes in any case."""
    try:
        yield
    except BaseException as error:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate(timeout=WAIT)
        error.add_note(f"the demo's log:\n{err}")
        raise
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=WAIT)


@contextmanager
def _demo(
    state_dir: Path, command: tuple[str, ...] = ("demo", "--no-browser")
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process = _start(*command, "--state-dir", str(state_dir), "--web-port", "0")
    with _reaped(process):
        assert process.stdout is not None
        _read_until(process.stdout, f"touchlamp {command[0]}: open http")
        document = json.loads((state_dir / "demo.json").read_text())
        yield process, document


def _post(url: str) -> None:
    request = urllib.request.Request(url, method="POST")  # noqa: S310  the demo's own loopback page
    with urllib.request.urlopen(request, timeout=WAIT) as response:  # noqa: S310  same
        assert response.status == 200


def _lamps_until(web: str, check: Any) -> list[dict[str, Any]]:
    """Read the page's event stream until a snapshot satisfies ``check``."""
    with urllib.request.urlopen(web + "api/events", timeout=WAIT) as stream:  # noqa: S310  loopback
        for raw in stream:
            if raw.startswith(b"data: "):
                lamps: list[dict[str, Any]] = json.loads(raw[len(b"data: ") :])
                if check(lamps):
                    return lamps
    raise AssertionError("the event stream ended")


def _by_id(lamps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {lamp["id"]: lamp for lamp in lamps}


def _touch_and_see_the_others(document: dict[str, Any], toucher: str = "lamp-a") -> None:
    web = document["web"]
    lamps = _lamps_until(web, lambda lamps: all(lamp["online"] for lamp in lamps))
    colour = _by_id(lamps)[toucher]["color"]
    others = [lamp["id"] for lamp in lamps if lamp["id"] != toucher]

    _post(f"{web}api/lamps/{toucher}/press")
    _post(f"{web}api/lamps/{toucher}/release")

    _lamps_until(
        web,
        lambda lamps: all(
            same_hue(Rgb(*_by_id(lamps)[other]["led"]), colour, gamma=2.2) for other in others
        ),
    )


def _stop(process: subprocess.Popen[str], state_dir: Path) -> None:
    children = _children(process.pid)
    assert children, "the demo should run Mosquitto as its child"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=WAIT)
    assert process.returncode == 0, err
    assert not [pid for pid in children if _alive(pid)], "a child of the demo is still running"
    assert _processes_using(state_dir) == []


def test_the_demo_lights_one_lamp_from_the_other_and_cleans_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"

    with _demo(state_dir) as (process, document):
        assert document["broker"]["host"] == "127.0.0.1"
        assert isinstance(document["broker"]["port"], int)
        assert [lamp["id"] for lamp in document["lamps"]] == ["lamp-a", "lamp-b"]
        assert all(lamp["username"] == lamp["id"] for lamp in document["lamps"])
        assert all(len(lamp["password"]) >= 16 for lamp in document["lamps"])
        assert (state_dir / "demo.json").stat().st_mode & 0o077 == 0
        _touch_and_see_the_others(document)
        _stop(process, state_dir)

    # Again on the same state directory: the same lamps, still paired.
    with _demo(state_dir) as (process, again):
        assert [lamp["password"] for lamp in again["lamps"]] == [
            lamp["password"] for lamp in document["lamps"]
        ]
        _touch_and_see_the_others(again)
        _stop(process, state_dir)


def test_sim_pairs_three_lamps_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with _demo(state_dir, ("sim", "--lamps", "3")) as (process, document):
        assert [lamp["id"] for lamp in document["lamps"]] == ["lamp-a", "lamp-b", "lamp-c"]
        _touch_and_see_the_others(document, toucher="lamp-c")
        children = _children(process.pid)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=WAIT)
        assert process.returncode == 0
        assert not [pid for pid in children if _alive(pid)]
        assert _processes_using(state_dir) == []


def test_a_signal_during_start_up_leaves_nothing_behind(tmp_path: Path) -> None:
    """SIGTERM as soon as Mosquitto runs (while the relay and lamps are still starting)."""
    state_dir = tmp_path / "state"
    process = _start("demo", "--no-browser", "--state-dir", str(state_dir), "--web-port", "0")
    with _reaped(process):
        assert process.stdout is not None
        _read_until(process.stdout, "touchlamp demo: starting")
        wait_until(lambda: bool(_children(process.pid)), "Mosquitto started by the demo")
        children = _children(process.pid)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=WAIT)
        assert process.returncode == 0
        assert not [pid for pid in children if _alive(pid)]
        assert _processes_using(state_dir) == []
