"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in its own directory, the server on a
free loopback port, removed after — what the tests already do for Mosquitto.

The server is ``postgres`` run directly as a child of this process, not through ``pg_ctl start``:
``pg_ctl`` detaches the server, so a test run killed hard (SIGKILL, the CI's timeout) would leave
it running. As a direct child it gets a parent-death signal (``PR_SET_PDEATHSIG``, SIGQUIT: an
immediate shutdown that also ends its backends), so it cannot outlive the process that started it.
Linux sends that signal when the *thread* that started it ends: start it from the main thread
(fixtures and ``fresh_backend`` run there).

PostgreSQL refuses to run as root; run as root (CI, containers), the cluster runs as the
``postgres`` user that Debian's ``postgresql`` package creates (``scripts/setup`` installs it).
Its files live in a directory of their own under the system's temporary directory, because
pytest's own (``/tmp/pytest-of-root``, mode 0700) is closed to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

__all__ = [
    "ClusterStartError",
    "ThrowawayPostgres",
    "find_bindir",
    "session_cluster",
    "session_cluster_running",
    "stop_session_cluster",
]

_PREFIX = "touchlamp-test-pg-"
_ABANDONED_SECONDS = 3600.0
_READY_SECONDS = 60.0
_PORT_ATTEMPTS = 5
_SUPERUSER = "postgres"
_RUN_AS = "postgres"  # the unprivileged user the cluster runs as when we are root
# A throwaway cluster: durability buys nothing, and the machine is shared.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP on loopback only: never the machine's socket directory
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "100",
}


class ClusterStartError(RuntimeError):
    """The throwaway cluster could not be made or started; the message says why and the fix."""


def find_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` are: ``pg_config --bindir``, else Debian's
    ``/usr/lib/postgresql/<version>/bin`` (the newest)."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            found = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(Path(found.stdout.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise ClusterStartError(
        "PostgreSQL's server programs (initdb, postgres) were not found via `pg_config --bindir` "
        "or in /usr/lib/postgresql/*/bin; run scripts/setup (it installs Debian's `postgresql`), "
        "or point TOUCHLAMP_TEST_PG_DSN at a server of your own"
    )


@dataclass(frozen=True, slots=True)
class _Owner:
    uid: int
    gid: int
    name: str


def _owner() -> _Owner | None:
    """Whom the cluster runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(_RUN_AS)
    except KeyError:
        raise ClusterStartError(
            f"running as root, the test cluster must run as an ordinary user, and there is no "
            f"{_RUN_AS!r} user; run scripts/setup (Debian's `postgresql` package creates it)"
        ) from None
    return _Owner(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)


def _quit_when_parent_dies(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets SIGQUIT when ``parent`` ends (Linux only).

    Runs after Popen has switched user, so the switch does not clear the setting."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1  # <linux/prctl.h>

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGQUIT)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal us
            os.kill(os.getpid(), signal.SIGQUIT)

    return set_parent_death_signal


def _remove_abandoned(parent: Path, *, now: float | None = None) -> list[Path]:
    """Remove the directories of clusters whose run was killed hard (the server ended with it,
    nobody removed its files): no live server in them, and untouched for an hour (so a cluster
    another run is still making is left alone). Returns what it removed."""
    removed: list[Path] = []
    for directory in parent.glob(_PREFIX + "*"):
        try:
            untouched = (now or time.time()) - directory.stat().st_mtime
            pid_file = directory / "data" / "postmaster.pid"
            alive = pid_file.exists() and Path(f"/proc/{pid_file.read_text().split()[0]}").exists()
        except (OSError, IndexError):
            continue  # not ours to judge (another user's, or going away meanwhile)
        if not alive and untouched > _ABANDONED_SECONDS:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


class ThrowawayPostgres:
    """One cluster: ``start()`` makes and starts it, ``dsn`` reaches it, ``stop()`` removes it."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.port = 0
        self._password = secrets.token_urlsafe(18)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """A superuser's ``postgresql://`` URL (it may create databases)."""
        return f"postgresql://{_SUPERUSER}:{self._password}@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The server's (postmaster's) process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def log(self) -> Path:
        assert self.directory is not None, "the cluster has not been started"
        return self.directory / "server.log"

    def start(self) -> None:
        bindir = find_bindir()
        owner = _owner()
        _remove_abandoned(Path(tempfile.gettempdir()))
        self.directory = Path(tempfile.mkdtemp(prefix=_PREFIX))
        if owner is not None:
            os.chown(self.directory, owner.uid, owner.gid)
        data = self.directory / "data"
        password_file = self.directory / "password"
        password_file.write_text(self._password + "\n")
        if owner is not None:
            os.chown(password_file, owner.uid, owner.gid)
        initdb = subprocess.run(
            [str(bindir / "initdb"), "--pgdata", str(data), "--username", _SUPERUSER,
             "--auth", "scram-sha-256", "--pwfile", str(password_file),
             "--encoding", "UTF8", "--locale", "C", "--no-sync"],
            capture_output=True, text=True, check=False, cwd=self.directory,
            user=owner.uid if owner else None, group=owner.gid if owner else None,
            extra_groups=[] if owner else None,
        )  # fmt: skip
        password_file.unlink()
        if initdb.returncode != 0:
            raise ClusterStartError(
                f"initdb failed ({initdb.returncode}) in {data}:\n{initdb.stderr.strip()}"
            )
        for _attempt in range(_PORT_ATTEMPTS):
            self.port = free_port()
            if self._serve(bindir, data, owner):
                return
        raise ClusterStartError(
            f"no free loopback port in {_PORT_ATTEMPTS} attempts (log {self.log})"
        )

    def _serve(self, bindir: Path, data: Path, owner: _Owner | None) -> bool:
        """Start the server on ``self.port``; False if another process took the port meanwhile."""
        settings = [
            f"--{name.replace('_', '-')}={value}" for name, value in _SERVER_SETTINGS.items()
        ]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), *settings],
                stdout=output,
                stderr=output,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                preexec_fn=_quit_when_parent_dies(os.getpid()),  # noqa: PLW1509  prctl + getppid only
                user=owner.uid if owner else None,
                group=owner.gid if owner else None,
                extra_groups=[] if owner else None,
            )
        deadline = time.monotonic() + _READY_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                said = self.log.read_bytes()[offset:].decode(errors="replace")
                self._process = None
                if "could not bind" in said or "Address already in use" in said:
                    return False
                raise ClusterStartError(f"postgres exited at start:\n{said.strip()[-2000:]}")
            if self._accepts_connections():
                return True
            time.sleep(0.05)
        self.stop()
        raise ClusterStartError(f"postgres did not accept connections in {_READY_SECONDS:g} s")

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Stop the server (fast shutdown; SIGKILL if it hangs) and remove the directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, then exits
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


_session: ThrowawayPostgres | None = None
_session_error: str | None = None


def session_cluster() -> ThrowawayPostgres:
    """The cluster shared by this run, started on first use; ``stop_session_cluster`` (the
    session's end, or interpreter exit for a script) removes it. A start that failed fails
    every later call with the same reason instead of trying again."""
    global _session, _session_error  # noqa: PLW0603  one cluster per run
    if _session_error is not None:
        raise ClusterStartError(_session_error)
    if _session is None:
        cluster = ThrowawayPostgres()
        try:
            cluster.start()
        except ClusterStartError as error:
            cluster.stop()
            _session_error = str(error)
            raise
        _session = cluster
        atexit.register(stop_session_cluster)
    return _session


def session_cluster_running() -> bool:
    return _session is not None


def stop_session_cluster() -> None:
    global _session
    cluster, _session = _session, None
    if cluster is not None:
        cluster.stop()
