"""A benchmark's world: its own Mosquitto, lamps on it and in a relay store, relay processes.

The broker is ``ManagedBroker`` — the project's own rendered configuration (dynamic security,
persistence, limits) on a free loopback port, its state in a temporary directory — so every
figure includes what the real broker does. Relays run as ``touchlamp relay run`` child processes,
configured by environment variables exactly as the systemd unit would, so the load generator in
this process does not share their interpreter, and their CPU and memory are read from ``/proc``.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from bench.procfs import ProcessSample, sample
from touchlamp.broker.errors import BrokerStartError
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.broker.parent_watch import ParentWatch
from touchlamp.config.broker import BrokerSettings, LimitsSettings, ListenerSettings
from touchlamp.protocol import Topics
from touchlamp.server.store import open_store

__all__ = [
    "BenchSite",
    "PeerProcess",
    "RelayProcess",
    "SiteError",
    "echo_relay",
    "free_port",
    "touchlamp_command",
]

_PORT_ATTEMPTS = 5
_READY_MARK = "forwarding"  # `touchlamp relay run` prints "connected to …, forwarding"
# bench.peer runs as `python -m bench.peer`: from the repository root, where `bench` is.
_REPO_ROOT = Path(__file__).resolve().parent.parent
_COLORS = ("#ff3300", "#0066ff", "#33cc33", "#cc33ff", "#ffcc00", "#00cccc")


class SiteError(RuntimeError):
    """A part of the benchmark's world did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def touchlamp_command(*args: str) -> list[str]:
    """``touchlamp ARGS`` with this interpreter (the venv's), wherever the script is installed."""
    return [sys.executable, "-m", "touchlamp", *args]


class RelayProcess:
    """One ``touchlamp relay run`` child: started, waited for, measured, stopped."""

    def __init__(self, *, env: dict[str, str], log: Path, name: str) -> None:
        self.name = name
        self._log_path = log
        self._log: IO[bytes] = log.open("wb")
        # Killed hard, the benchmark takes its relay down too, as it does its Mosquitto.
        self._watcher = ParentWatch(self._log)
        self._process = subprocess.Popen(
            touchlamp_command("relay", "run"),
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._watcher.watch(self._process.pid)

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SiteError(
                    f"relay {self.name} exited with {self._process.returncode}; its log:\n"
                    + self.log_tail()
                )
            if _READY_MARK in self._log_path.read_text(errors="replace"):
                return
            time.sleep(0.02)
        raise SiteError(
            f"relay {self.name} did not connect within {timeout:g} s:\n{self.log_tail()}"
        )

    def sample(self) -> ProcessSample:
        return sample(self.pid)

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM (the relay finishes its queue and waits for its acks), SIGKILL after timeout."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._watcher.dismiss()
        self._log.close()
        return self._process.returncode

    def log_tail(self, lines: int = 20) -> str:
        text = self._log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class BenchSite:
    """Mosquitto, lamps and a relay store under ``directory``; a context manager."""

    def __init__(
        self,
        directory: Path,
        *,
        save_every_change: bool = False,
        before_start: Callable[[BrokerSettings], None] | None = None,
    ) -> None:
        self.directory = directory
        self._save_every_change = save_every_change
        # Called with the broker's settings before it first starts (e.g. import_lamps).
        self._before_start = before_start
        self.store_path = directory / "relay.sqlite3"
        self.passwords: dict[str, str] = {}
        self.colors: dict[str, str] = {}
        self._broker: ManagedBroker | None = None
        self._relays: list[RelayProcess] = []
        self._relay_logins: dict[str, str] = {}

    @property
    def broker(self) -> ManagedBroker:
        if self._broker is None:
            raise SiteError("the site is not started: use it as a context manager")
        return self._broker

    @property
    def topics(self) -> Topics:
        return self.broker.topics

    def __enter__(self) -> BenchSite:
        self.directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(_PORT_ATTEMPTS):
            broker = ManagedBroker(
                BrokerSettings(
                    state_dir=self.directory / "broker",
                    listeners=[ListenerSettings(address="127.0.0.1", port=free_port())],
                    # The shipped default (periodic saves) unless --save-every-change asks
                    # for the other setting, to show what it costs.
                    limits=LimitsSettings(save_every_change=self._save_every_change),
                ),
                stop_with_parent=True,
            )
            if self._before_start is not None:
                self._before_start(broker.settings)
                self._before_start = None
            try:
                broker.start()
            except BrokerStartError as error:
                if "cannot listen" in str(error):
                    continue
                raise
            self._broker = broker
            return self
        raise SiteError("no free loopback port for Mosquitto after several attempts")

    def __exit__(self, *_exc: object) -> None:
        for relay in self._relays:
            relay.stop()
        self._relays.clear()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def add_lamps(self, lamp_ids: list[str], *, together: bool = True) -> float:
        """Create the lamps on the broker and in the relay's store; the broker's seconds.

        ``together``: ``BrokerAdmin.add_lamps`` (a few messages, as ``touchlamp broker lamp add
        ID ID…`` does); otherwise one ``BrokerAdmin.add_lamp`` per lamp.
        """
        started = time.monotonic()
        with self.broker.admin(timeout=120.0) as admin:
            if together:
                made = admin.add_lamps(lamp_ids)
            else:
                made = {lamp_id: admin.add_lamp(lamp_id) for lamp_id in lamp_ids}
        seconds = time.monotonic() - started
        self.record_lamps(made)
        return seconds

    def record_lamps(self, passwords: dict[str, str]) -> None:
        """Lamps already on the broker (``passwords``): keep their passwords, add them to the
        relay's store."""
        lamp_ids = list(passwords)
        self.passwords.update(passwords)
        store = open_store(self.store_path)
        try:
            for index, lamp_id in enumerate(lamp_ids):
                color = _COLORS[index % len(_COLORS)]
                self.colors[lamp_id] = color
                store.add_lamp(lamp_id, name=lamp_id, color=color, now_ms=0)
        finally:
            store.close()

    def pair(self, groups: list[list[str]]) -> None:
        store = open_store(self.store_path)
        try:
            for members in groups:
                store.create_group(members, name="bench", group_id=f"g-{secrets.token_hex(4)}")
        finally:
            store.close()

    def relay_login(self, name: str) -> tuple[str, str]:
        """A relay login (username, password) bound to client id ``name``, made once: the
        broker binds each relay login to its name (SECURITY.md)."""
        if name not in self._relay_logins:
            with self.broker.admin() as admin:
                self._relay_logins[name] = admin.add_relay(name)
        return name, self._relay_logins[name]

    def relay_env(
        self, *, client_id: str, rate_limited: bool = True, metrics_port: int = 0
    ) -> dict[str, str]:
        """``TOUCHLAMP_RELAY_*`` for a relay on this site; ``rate_limited=False`` lifts the
        per-lamp limit (a burst measures the relay, not its policy)."""
        username, password = self.relay_login(client_id)
        env = {
            "TOUCHLAMP_RELAY_STATE_DIR": str(self.directory / "relay-state"),
            "TOUCHLAMP_RELAY_STORE_URL": str(self.store_path),
            "TOUCHLAMP_RELAY_MQTT__HOST": self.broker.host,
            "TOUCHLAMP_RELAY_MQTT__PORT": str(self.broker.port),
            "TOUCHLAMP_RELAY_MQTT__USERNAME": username,
            "TOUCHLAMP_RELAY_MQTT__PASSWORD": password,
            "TOUCHLAMP_RELAY_MQTT__CLIENT_ID": client_id,
            "TOUCHLAMP_RELAY_MQTT__TOPIC_ROOT": self.topics.root,
            "TOUCHLAMP_RELAY_METRICS_PORT": str(metrics_port),
        }
        if not rate_limited:
            env["TOUCHLAMP_RELAY_RATE_LIMIT__PER_SECOND"] = "1000000000"
            env["TOUCHLAMP_RELAY_RATE_LIMIT__BURST"] = "1000000000"
        return env

    @contextmanager
    def relays(self, *client_ids: str, rate_limited: bool = True) -> Iterator[list[RelayProcess]]:
        """Start one relay process per client id, wait until each forwards; stop them after."""
        started: list[RelayProcess] = []
        try:
            for client_id in client_ids:
                relay = RelayProcess(
                    env=self.relay_env(client_id=client_id, rate_limited=rate_limited),
                    log=self.directory / f"{client_id}.log",
                    name=client_id,
                )
                started.append(relay)
                self._relays.append(relay)
            for relay in started:
                relay.wait_ready()
            yield started
        finally:
            for relay in started:
                relay.stop()
                self._relays.remove(relay)


class PeerProcess:
    """A ``python -m bench.peer ROLE`` child (see bench/peer.py); its stdout read by a thread.

    The child ends when its stdin closes — at ``stop``, or when this process dies, however —
    and some answer questions sent there (``ask``). ``module``: another module run the same way
    (bench/tap_lamp.py, whose ``role`` is None)."""

    def __init__(
        self,
        role: str | None,
        *,
        site: BenchSite,
        username: str,
        password: str,
        module: str = "bench.peer",
        **options: str,
    ) -> None:
        secret = site.directory / f"peer-{username}-{secrets.token_hex(3)}.password"
        secret.write_text(password, encoding="utf-8")
        secret.chmod(0o600)
        command = [
            sys.executable, "-m", module, *([role] if role else []),
            "--host", site.broker.host, "--port", str(site.broker.port),
            "--username", username, "--password-file", str(secret),
        ]  # fmt: skip
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", value]
        self.ready = threading.Event()
        self.progress = 0
        self._last_line = ""
        self._answers: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=_REPO_ROOT,
        )
        self._reader = threading.Thread(target=self._read, name=f"peer-{role}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout):
            raise SiteError(f"peer process {self._process.args!r} did not subscribe in time")

    def ask(self, question: str, *, timeout: float = 30.0) -> Any:
        """Send one line to the child; its answer, one JSON array on a line."""
        assert self._process.stdin is not None  # a pipe: see __init__
        self._process.stdin.write(question + "\n")
        self._process.stdin.flush()
        try:
            return json.loads(self._answers.get(timeout=timeout))
        except queue.Empty:
            raise SiteError(
                f"peer process {self._process.args!r} did not answer {question!r} in time"
            ) from None

    def stop(self, *, timeout: float = 30.0) -> dict[str, object]:
        """End it (its stdin closed; SIGTERM if that did not do) and return its closing JSON
        report (empty if it printed none)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout)
        self._reader.join(timeout)
        if self._last_line.startswith("{"):
            report: dict[str, object] = json.loads(self._last_line)
            return report
        return {}

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            text = line.strip()
            if text == "ready":
                self.ready.set()
            elif text.startswith("progress "):
                self.progress = int(text.split()[1])
            elif text.startswith("["):
                self._answers.put(text)
            self._last_line = text


def echo_relay(site: BenchSite, pairs: list[list[str]]) -> PeerProcess:
    """A relay that does no work (bench/peer.py ``echo``) between the lamps of ``pairs``, on a
    relay login of its own; not yet ready (``wait_ready``)."""
    username, password = site.relay_login("bench-echo")
    return PeerProcess(
        "echo",
        site=site,
        username=username,
        password=password,
        client_id="bench-echo",
        root=site.topics.root,
        pairs=",".join(":".join(pair) for pair in pairs),
    )
