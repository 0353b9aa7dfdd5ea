"""The PostgreSQL tests' own cluster: the tests really run on it (not on a server that happens to
answer on 5432), and it cannot outlive a test run killed hard."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.relay.store_backends import postgres_admin_dsn
from tests.support.postgres_cluster import _remove_abandoned, session_cluster
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    bool(os.environ.get("TOUCHLAMP_TEST_PG_DSN")), reason="TOUCHLAMP_TEST_PG_DSN picks the server"
)
def test_the_postgres_tests_run_on_the_cluster_the_tests_started() -> None:
    dsn = postgres_admin_dsn()
    cluster = session_cluster()
    assert cluster.directory is not None
    assert dsn == cluster.dsn
    port = urlsplit(dsn).port
    assert port is not None
    assert port != 5432  # the machine's own server, which the tests must not use
    with psycopg.connect(dsn) as connection:
        served_port = connection.execute("SHOW port").fetchone()
        data_directory = connection.execute("SHOW data_directory").fetchone()
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        # The backend serving us is a child of the postmaster this run started.
        status = Path(f"/proc/{backend[0]}/status").read_text()
    assert served_port == (str(port),)
    assert data_directory is not None
    assert Path(data_directory[0]).is_relative_to(cluster.directory)
    parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
    assert int(parent) == cluster.pid


def test_the_cluster_ends_when_the_process_that_started_it_is_killed_hard(
    tmp_path: Path,
) -> None:
    """A child Python starts a cluster as the tests do, reports the server's pid, and is killed
    with SIGKILL (no teardown runs): the server and its directory must not stay behind."""
    script = textwrap.dedent(
        """
        import sys, time
        from tests.support.postgres_cluster import _remove_abandoned, session_cluster
        cluster = session_cluster()
        print(cluster.pid, cluster.directory, flush=True)
        time.sleep(600)
        """
    )
    with (tmp_path / "child.log").open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=_ROOT,
            env={**os.environ, "PYTHONPATH": str(_ROOT)},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    with child:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"the child did not start a cluster:\n{(tmp_path / 'child.log').read_text()}"
        pid_text, directory = line.split()
        server = int(pid_text)
        assert _alive(server)
        child.send_signal(signal.SIGKILL)
    wait_until(lambda: not _alive(server), f"postgres (pid {server}) to end with its parent")
    # The directory stays (nobody was left to remove it); a run an hour later removes it.
    assert Path(directory).name.startswith("touchlamp-test-pg-")
    shutil.rmtree(directory)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, ended but not reaped, counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
    return state != "Z"


def test_a_killed_runs_cluster_directory_is_removed_by_a_later_run_but_no_live_one(
    tmp_path: Path,
) -> None:
    hour_and_more = time.time() - 3700
    abandoned, fresh, live = (tmp_path / f"touchlamp-test-pg-{name}" for name in "afl")
    for directory in (abandoned, fresh, live):
        (directory / "data").mkdir(parents=True)
    (live / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n/some/data\n")
    for directory in (abandoned, live):
        os.utime(directory, (hour_and_more, hour_and_more))
    assert _remove_abandoned(tmp_path) == [abandoned]
    assert sorted(tmp_path.iterdir()) == [fresh, live]
