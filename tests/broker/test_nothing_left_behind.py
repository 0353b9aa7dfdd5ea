"""No broker left behind: ``demo``, ``sim`` and ``broker run`` hung up or killed hard (issue 18).

Each command is started the way a user starts it (``setsid touchlamp demo --no-browser
--web-port 0 --state-dir D &``: a session of its own, so no terminal signal reaches its
children), as root (Mosquitto then switches to its own user, which clears a parent-death signal)
and as an ordinary user (``setpriv`` to ``nobody``, with an interpreter it may run: see
``_interpreter_for``). Then:

- SIGHUP (its terminal closed) stops it as SIGTERM does: exit code 0, every child gone;
- SIGKILL leaves no process behind within 5 s: the bound RELIABILITY.md promises.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.device.test_demo import TOUCHLAMP, _alive, _children, _processes_using, _read_until
from tests.support.ports import free_port
from tests.support.waiting import WAIT

# The promise tested: after SIGKILL, nothing the command started still runs this long after.
LEFT_BEHIND_AFTER_SECONDS = 5.0
ORDINARY_USER = "nobody"


@dataclass(frozen=True, slots=True)
class Starter:
    words: list[str]  # what runs touchlamp, as this user
    home: Path  # a directory of the user's own
    uid: int


@dataclass(frozen=True, slots=True)
class Command:
    words: tuple[str, ...]
    ready_mark: str


def _command(name: str, state_dir: Path) -> Command:
    if name == "broker-run":
        return Command(
            ("broker", "run", "--state-dir", str(state_dir), "--port", str(free_port())),
            "is running; Ctrl-C stops it",
        )
    words = ("demo", "--no-browser") if name == "demo" else ("sim", "--lamps", "2")
    return Command(
        (*words, "--web-port", "0", "--state-dir", str(state_dir)), f"touchlamp {name}: open http"
    )


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="touchlamp-left-behind-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _can_run(prefix: list[str], interpreter: str) -> bool:
    """Whether the user's ``interpreter`` can start itself again (as the broker launcher does)."""
    again = "import os, sys; os.execv(sys.executable, [sys.executable, '-c', 'import touchlamp'])"
    probe = [*prefix, interpreter, "-c", again]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def _interpreter_for(prefix: list[str], shared: Path) -> list[str]:
    """How the user starts touchlamp: our own script, or a venv of its own reusing our packages.

    The commands start helpers with ``sys.executable``, so the user must be able to run it; a
    venv whose interpreter lives under /root (pyenv) is out of its reach. Then a venv made from
    the same Python version's system interpreter, seeing our site-packages, stands in.
    """
    if _can_run(prefix, sys.executable):
        return [str(TOUCHLAMP)]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    venv = shared / "venv"
    if system is not None and not venv.exists():
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
        packages = sysconfig.get_path("purelib", vars={"base": str(venv)})
        (Path(packages) / "touchlamp-tests.pth").write_text(
            f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n"
        )
    if system is None or not _can_run(prefix, str(venv / "bin" / "python")):
        pytest.skip(f"{ORDINARY_USER} cannot run {sys.executable} nor a {version} of its own")
    return [str(venv / "bin" / "python"), "-m", "touchlamp"]


@pytest.fixture(params=["root", "user"])
def runner(request: pytest.FixtureRequest, shared_dir: Path) -> Iterator[Starter]:
    """The command line that starts touchlamp as root or as an ordinary user, and its home."""
    prefix: list[str] = []
    uid = os.geteuid()
    if os.geteuid() != 0 and request.param == "root":
        pytest.skip("needs root: Mosquitto switches user only when started as root")
    home = Path(tempfile.mkdtemp(prefix="home-", dir=shared_dir))
    home.chmod(0o755)
    if os.geteuid() == 0 and request.param == "user":
        account = pwd.getpwnam(ORDINARY_USER)
        os.chown(home, account.pw_uid, account.pw_gid)
        uid = account.pw_uid
        prefix = [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "--",
        ]
    yield Starter([*prefix, *_interpreter_for(prefix, shared_dir)], home, uid)
    shutil.rmtree(home, ignore_errors=True)


def _start(starter: Starter, command: Command, log: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "HOME": str(starter.home)}
    with log.open("w") as stderr:
        return subprocess.Popen(
            [*starter.words, "-v", *command.words],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environment,
            start_new_session=True,  # what `setsid` does
        )


def _real_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def _gone(pids: set[int], state_dir: Path) -> bool:
    return not [pid for pid in pids if _alive(pid)] and _processes_using(state_dir) == []


@pytest.mark.parametrize("how", ["sighup", "sigkill"])
@pytest.mark.parametrize("name", ["demo", "sim", "broker-run"])
def test_a_stopped_command_leaves_no_process_behind(
    runner: Starter, name: str, how: str, tmp_path: Path
) -> None:
    state_dir = runner.home / "state"
    command = _command(name, state_dir)
    log = tmp_path / "stderr.log"
    process = _start(runner, command, log)
    family: set[int] = set()
    try:
        assert process.stdout is not None
        _read_until(process.stdout, command.ready_mark)
        family = _children(process.pid)
        assert _real_uid(process.pid) == runner.uid
        assert [command for command in _processes_using(state_dir) if "mosquitto -c" in command]

        if how == "sighup":
            process.send_signal(signal.SIGHUP)
            output, _ = process.communicate(timeout=WAIT)
            assert process.returncode == 0
            assert "stopped" in output
            assert _gone(family, state_dir), "SIGHUP left a process behind"
        else:
            process.kill()
            process.communicate(timeout=WAIT)
            deadline = time.monotonic() + LEFT_BEHIND_AFTER_SECONDS
            while not _gone(family, state_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _gone(family, state_dir), (
                f"{LEFT_BEHIND_AFTER_SECONDS:g} s after SIGKILL still running: "
                f"{_processes_using(state_dir)}"
            )
    except BaseException as error:
        error.add_note(f"the command's log:\n{log.read_text()}")
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=WAIT)
        for pid in family:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
