"""``ManagedBroker``: a real Mosquitto started from touchlamp's own rendering (dev, demo, tests).

It prepares the state dir (``touchlamp.broker.state``), starts ``mosquitto -c …`` as a child
process in its own session (so a Ctrl-C meant for us does not kill it half-way), waits until it
listens, and stops it with SIGTERM — SIGKILL only if it does not exit in time. ``kill9()`` and
``restart()`` exist for crash tests.

Its own session also means a parent killed with SIGKILL (a test run's timeout, the demo killed
from another terminal) would leave Mosquitto running, holding its port. ``stop_with_parent``
starts a small watcher process beside it (parent_watch.py) that stops Mosquitto once this
process ends, however it ends and whichever user Mosquitto switched to — used by the demo,
``broker run``, the benchmarks and the tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from typing import IO

from touchlamp.broker.admin import BrokerAdmin
from touchlamp.broker.errors import BrokerStartError
from touchlamp.broker.parent_watch import ParentWatch
from touchlamp.broker.state import BrokerCredentials, StateLayout, prepare_state_dir
from touchlamp.config.broker import BrokerSettings
from touchlamp.lifecycle import StopsOnExit
from touchlamp.protocol.topics import Topics
from touchlamp.stopping import uninterrupted

__all__ = ["ManagedBroker", "connect_host"]

log = logging.getLogger(__name__)

_POLL_INTERVAL = 0.01
_LOG_TAIL_LINES = 25
# Printed by every Mosquitto 1.x/2.x once its listeners are open and it serves clients.
_RUNNING_MARK = b" running"
# Problems Mosquitto logs and then keeps running with (e.g. the plugin without its JSON: every
# client would be refused). Starting anyway would hide them, so they fail the start.
_FATAL_MARKS = (b"Error",)
# Linux only (pidfds): elsewhere Mosquitto outlives a launcher killed with SIGKILL.
_PIDFDS = hasattr(os, "pidfd_open")


def connect_host(address: str) -> str:
    """Where a local client connects to reach a listener bound to ``address``."""
    if address in {"", "0.0.0.0"}:  # noqa: S104  comparing, not binding
        return "127.0.0.1"
    if address == "::":
        return "::1"
    return address


class ManagedBroker(StopsOnExit):
    """One Mosquitto process serving ``settings`` from ``settings.state_dir``."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        stop_with_parent: bool = False,
    ) -> None:
        self.settings = settings
        self._stop_with_parent = stop_with_parent
        self.layout = StateLayout(settings.state_dir)
        self.topics = Topics(settings.topic_root)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._credentials: BrokerCredentials | None = None
        self._watcher: ParentWatch | None = None

    @property
    def host(self) -> str:
        """The address clients on this machine use for the first listener."""
        return connect_host(self.settings.listeners[0].address)

    @property
    def port(self) -> int:
        return self.settings.listeners[0].port

    @property
    def credentials(self) -> BrokerCredentials:
        if self._credentials is None:
            raise BrokerStartError("the broker's state dir is not prepared yet: call start() first")
        return self._credentials

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def admin(self, *, timeout: float = 10.0) -> BrokerAdmin:
        """A (not yet connected) admin client for this broker."""
        return BrokerAdmin(
            host=self.host,
            port=self.port,
            username=self.credentials.admin_username,
            password=self.credentials.admin_password,
            topics=self.topics,
            timeout=timeout,
        )

    def start(self) -> None:
        """Start Mosquitto and return once it accepts connections; ``BrokerStartError`` if not."""
        if self.running:
            return
        self._check_installation()
        self._check_ports_free()
        self._credentials = prepare_state_dir(self.settings)
        # Only its owner reads the log: it names every client and where it connects from.
        descriptor = os.open(self.layout.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log = os.fdopen(descriptor, "ab")
        log_start = self._log.tell()
        command = [str(self.settings.mosquitto_path), "-c", str(self.layout.config_file.resolve())]
        # The watcher first: once Mosquitto runs, only the moment until watch() is unguarded.
        self._watcher = ParentWatch(self._log) if self._stop_with_parent and _PIDFDS else None
        try:
            # A stop signal's interrupt waits until the pid is recorded and watched: raised
            # inside Popen after the fork, it would leave a Mosquitto that nothing stops.
            with uninterrupted():
                self._process = subprocess.Popen(  # noqa: S603  our own binary and config
                    command,
                    cwd=self.layout.data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=self._log,
                    start_new_session=True,
                )
                if self._watcher is not None:
                    self._watcher.watch(self._process.pid)
            self._wait_until_serving(log_start)
        except BaseException:
            self._terminate()
            raise
        if self.settings.websockets.enabled:
            log.warning(
                "the websockets listener on port %d listens on every interface (Mosquitto "
                "2.0.11 ignores its address): firewall it if it must stay private",
                self.settings.websockets.port,
            )
        log.info("mosquitto (pid %d) serving on %s:%d", self._process.pid, self.host, self.port)

    def stop(self) -> None:
        """Stop Mosquitto with SIGTERM (it saves its database), SIGKILL after the timeout."""
        self._terminate()

    def kill9(self) -> None:
        """Kill Mosquitto with SIGKILL, as a crash or power cut would (for tests)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._dismiss_watcher()
        self._close_log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until Mosquitto exits (its exit code) or ``timeout`` passes (``None``)."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.layout.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _check_installation(self) -> None:
        binary = self.settings.mosquitto_path
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise BrokerStartError(
                f"Mosquitto is not at {binary}: install Debian's mosquitto package "
                "(scripts/setup does) or set TOUCHLAMP_BROKER_MOSQUITTO_PATH"
            )
        plugin = self.settings.plugin_path
        if not plugin.is_file():
            raise BrokerStartError(
                f"the dynamic-security plugin is not at {plugin}: install Debian's mosquitto "
                "package (it ships mosquitto_dynamic_security.so) or set "
                "TOUCHLAMP_BROKER_PLUGIN_PATH"
            )

    def _check_ports_free(self) -> None:
        # Without this, a port held by another broker (the machine's own on 1883, say) would
        # answer our readiness check while our Mosquitto fails to bind.
        for address, port in self._endpoints():
            with socket.socket(_family(address), socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((address, port))
                except OSError as error:
                    raise BrokerStartError(
                        f"cannot listen on {address}:{port} ({error.strerror}): another program "
                        "uses it; choose another port (--port / TOUCHLAMP_BROKER_LISTENERS)"
                    ) from error

    def _endpoints(self) -> list[tuple[str, int]]:
        settings = self.settings
        endpoints = [(item.address, item.port) for item in settings.listeners]
        if settings.tls.enabled:
            endpoints.append((settings.tls.address, settings.tls.port))
        if settings.websockets.enabled:
            endpoints.append(("", settings.websockets.port))
        return endpoints

    def _wait_until_serving(self, log_start: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                raise BrokerStartError(
                    f"mosquitto exited with code {returncode} while starting; its log "
                    f"({self.layout.log_file}) ends:\n{self.log_tail()}"
                )
            output = self._log_since(log_start)
            if _RUNNING_MARK in output and self._accepts_connections():
                break
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"mosquitto did not start serving on {self.host}:{self.port} within "
                    f"{self._start_timeout:g} s; its log ends:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)
        fatal = [
            line
            for line in self._log_since(log_start).splitlines()
            if any(mark in line for mark in _FATAL_MARKS)
        ]
        if fatal:
            raise BrokerStartError(
                "mosquitto started but reported a problem, so it was stopped: "
                + "; ".join(line.decode("utf-8", "replace") for line in fatal)
                + f"\nits log ({self.layout.log_file}) ends:\n{self.log_tail()}"
            )

    def _log_since(self, offset: int) -> bytes:
        with self.layout.log_file.open("rb") as file:
            file.seek(offset)
            return file.read()

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _terminate(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "mosquitto (pid %d) ignored SIGTERM for %g s; killing it",
                    process.pid,
                    self._stop_timeout,
                )
                process.kill()
                process.wait()
        self._dismiss_watcher()
        self._close_log()

    def _dismiss_watcher(self) -> None:
        """End parent_watch.py once Mosquitto is reaped: it finds nothing left to stop."""
        if self._watcher is not None:
            self._watcher.dismiss()
            self._watcher = None

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
