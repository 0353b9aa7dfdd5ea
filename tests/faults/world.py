"""One scenario's world: the broker fixture, the relay's SQLite store, the relay (in this process
or as a ``touchlamp relay run`` subprocess that can be killed), fault proxies and lamps.

Every relay here runs with mutual touches off (window 0), so each touch makes exactly one glow
per other member and the ledger stays simple, and with a rate limit that lets scenarios send
fast unless a scenario sets its own.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.faults.lamps import FaultLamp, LampPlan
from tests.support.broker import BrokerFixture
from tests.support.ports import free_listening_port
from tests.support.proxy import FaultProxy
from tests.support.relay import relay_metrics, running_relay
from tests.support.waiting import WAIT, wait_until
from touchlamp.config.relay import RelaySettings
from touchlamp.server.relay import Relay
from touchlamp.server.store import Store, open_store

__all__ = ["FaultWorld", "RelayProcess"]

_RELAY_DEFAULTS: dict[str, Any] = {
    "rate_limit": {"per_second": 1000.0, "burst": 10_000},
    "forwarding": {"mutual_window_seconds": 0.0},
    "bad_payload_log_seconds": 0.0,
}


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _environment(values: dict[str, Any], prefix: str = "TOUCHLAMP_RELAY_") -> dict[str, str]:
    """Settings as the environment variables ``touchlamp relay run`` reads."""
    env: dict[str, str] = {}
    for key, value in values.items():
        name = prefix + key.upper()
        if isinstance(value, dict):
            env.update(_environment(value, name + "__"))
        else:
            env[name] = str(value)
    return env


_PORT_ATTEMPTS = 5


class _MetricsPortTakenError(Exception):
    """The relay process exited because its metrics port was taken."""


class RelayProcess:
    """``touchlamp relay run`` as a child process: start, SIGKILL, SIGTERM, read /metrics, RSS."""

    def __init__(self, *, values: dict[str, Any], log: Path) -> None:
        self.values = values
        self.metrics_port = int(values["metrics_port"])
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the relay process is not running"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start it and wait until it forwards. A restart takes a metrics port of its own (the
        old one may have been taken while the relay was down), and any start whose port another
        program took first is retried on a fresh one, its failure removed from the log (handled
        here; the guard over child logs would take it for the relay's error)."""
        for attempt in range(_PORT_ATTEMPTS):
            if attempt or self._process is not None:
                self.metrics_port = self.values["metrics_port"] = free_listening_port()
            offset = self.log.stat().st_size if self.log.exists() else 0
            env = {**os.environ, **_environment(self.values)}
            with self.log.open("ab") as output:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "touchlamp", "-v", "relay", "run"],
                    env=env,
                    stdout=output,
                    stderr=output,
                    stdin=subprocess.DEVNULL,
                )
            started = functools.partial(self._started_since, offset)
            try:
                wait_until(started, f"the relay process to connect (log {self.log})")
            except _MetricsPortTakenError:
                os.truncate(self.log, offset)
                continue
            return
        raise AssertionError(f"no free metrics port for the relay in {_PORT_ATTEMPTS} attempts")

    def _started_since(self, offset: int) -> bool:
        with self.log.open("rb") as log:
            log.seek(offset)
            said = log.read()
        if self._process is not None and self._process.poll() is not None:
            if b"Address already in use" in said:
                raise _MetricsPortTakenError
            raise AssertionError(
                f"relay run exited with {self._process.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        return b"forwarding" in said

    def kill9(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(WAIT)

    def stop(self) -> None:
        """SIGTERM (systemd's stop); the relay finishes what it took."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def rss_kib(self) -> int:
        """The process's resident set size (``VmRSS`` in /proc), in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])

    def metrics(self) -> dict[str, float]:
        """The relay's Prometheus counters and gauges, by name with labels."""
        return relay_metrics(self.metrics_port)


class FaultWorld:
    """See the module docstring. ``close()`` stops everything it started."""

    def __init__(self, broker: BrokerFixture, directory: Path) -> None:
        self.broker = broker
        self.directory = directory
        self.root = broker.topics.root
        self.store_path = directory / "relay.sqlite3"
        self.store: Store = open_store(self.store_path)
        self.lamps: list[FaultLamp] = []
        self.proxies: list[FaultProxy] = []
        self.relays: list[RelayProcess] = []

    # ---- parts ----

    def proxy(self) -> FaultProxy:
        """A fault proxy in front of the broker."""
        made = FaultProxy(target_port=self.broker.port)
        self.proxies.append(made)
        return made

    def lamp(
        self,
        lamp_id: str,
        *,
        color: str,
        via: FaultProxy | None = None,
        core: bool = True,
        **plan: Any,
    ) -> FaultLamp:
        """A lamp known to the broker and the store (not started); ``via`` a proxy."""
        password = self.broker.add_lamp(lamp_id)
        self.store.add_lamp(lamp_id, name=lamp_id, color=color, now_ms=0)
        made = FaultLamp(
            LampPlan(
                lamp_id=lamp_id,
                password=password,
                color=color,
                host=self.broker.host,
                port=via.port if via is not None else self.broker.port,
                topic_root=self.root,
                **{"state_dir": self.directory / lamp_id, **plan},
            ),
            core=core,
        )
        self.lamps.append(made)
        return made

    def pair(self, *lamps: FaultLamp | str) -> None:
        """Put these lamps (or lamp ids) into one group in the store."""
        ids = [lamp if isinstance(lamp, str) else lamp.lamp_id for lamp in lamps]
        self.store.create_group(ids, name="home", group_id=f"g-{secrets.token_hex(4)}")

    def relay_values(
        self, *, client_id: str = "relay-1", via: FaultProxy | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """Relay settings as nested values (``RelaySettings(**values)`` or the environment)."""
        username, password = self.broker.relay_login(client_id)
        return _merge(
            {
                **_RELAY_DEFAULTS,
                "state_dir": str(self.directory / f"state-{client_id}"),
                "store_url": str(self.store_path),
                "mqtt": {
                    "host": self.broker.host,
                    "port": via.port if via is not None else self.broker.port,
                    "username": username,
                    "password": password,
                    "client_id": client_id,
                    "topic_root": self.root,
                    "reconnect_min_seconds": 1.0,
                    "reconnect_max_seconds": 2.0,
                },
            },
            overrides,
        )

    @contextmanager
    def relay(self, **overrides: Any) -> Iterator[Relay]:
        """A relay in this process (its own store connection), stopped gracefully at the end."""
        settings = RelaySettings(**self.relay_values(**overrides))
        store = open_store(self.store_path)
        try:
            with running_relay(settings, store) as relay:
                yield relay
        finally:
            store.close()

    def relay_process(self, **overrides: Any) -> RelayProcess:
        """``touchlamp relay run`` as a child process, started and connected."""
        values = self.relay_values(**overrides)
        values.setdefault("metrics_port", free_listening_port())
        client_id = values["mqtt"]["client_id"]
        process = RelayProcess(values=values, log=self.directory / f"{client_id}.log")
        self.relays.append(process)
        process.start()
        return process

    def start(self, *lamps: FaultLamp) -> None:
        for lamp in lamps:
            lamp.start()
        for lamp in lamps:
            lamp.wait_connected()

    def close(self) -> None:
        """Stop every lamp (a lamp that cannot stop fails the test), relay and proxy."""
        errors: list[BaseException] = []
        for lamp in self.lamps:
            try:
                lamp.stop()
            except (RuntimeError, OSError) as error:
                errors.append(error)
        for relay in self.relays:
            relay.stop()
        for proxy in self.proxies:
            proxy.close()
        self.store.close()
        if errors:
            raise errors[0]
