"""A home's own MQTT broker, as Home Assistant users run it (often the Mosquitto add-on).

A plain Mosquitto on a free loopback port with a password file and no ACL: every login may
use every topic, like the add-on's default. It is *not* touchlamp's broker (no dynamic
security, no touchlamp topics), which is the point: the lamp's Home Assistant connection must
work with whatever the home runs. Started from the test's thread with ``PR_SET_PDEATHSIG`` (it
and a ``ParentWatch`` beside it, as the project's own broker: killed with the test run, it goes
too), stopped by the fixture.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.children import stop_child
from tests.support.ports import free_port
from touchlamp.broker.certs import Certificates
from touchlamp.broker.parent_watch import ParentWatch
from touchlamp.broker.passwords import hash_password

__all__ = ["HomeBroker"]

_START_TIMEOUT = 10.0


class HomeBroker:
    """``users`` maps username to password; ``host``/``port`` once started."""

    def __init__(
        self, directory: Path, *, users: dict[str, str], tls: Certificates | None = None
    ) -> None:
        self.directory = directory
        self.users = users
        self.host = "127.0.0.1"
        self.port = 0
        self.tls = tls
        self.tls_port = 0  # with ``tls``: a second listener, TLS only
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: ParentWatch | None = None

    def start(self, *, port: int | None = None) -> None:
        """Start on ``port`` (a restart keeps its port), else on a free one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        passwords = self.directory / "passwords"
        lines = []
        for user, password in self.users.items():
            hashed = hash_password(password)
            lines.append(f"{user}:$7${hashed.iterations}${hashed.salt_b64}${hashed.hash_b64}")
        passwords.write_text("\n".join(lines) + "\n")
        passwords.chmod(0o600)
        self.port = port or free_port()
        lines = [
            "user root",  # no user switch: files and signals stay simple
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            "persistence false",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            "log_type all",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            self.tls_port = self.tls_port or free_port()
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.ca_certificate}",
                f"certfile {self.tls.certificate}",
                f"keyfile {self.tls.key}",
            ]
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join([*lines, ""]))
        with (self.directory / "watch.log").open("ab") as watch_log:
            watcher = self._watcher = ParentWatch(watch_log)
        self._process = subprocess.Popen(
            ["/usr/sbin/mosquitto", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        watcher.watch(self._process.pid)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the home broker exited: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the home broker did not start: {self.log_tail()}"
                    ) from None
                time.sleep(0.02)

    def log_tail(self, lines: int = 30) -> str:
        path = self.directory / "mosquitto.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        watcher, self._watcher = self._watcher, None
        stop_child(process, watcher, timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
