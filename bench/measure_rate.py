"""How many touches per second one relay forwards with zero loss (a quick measurement, not a test).

    .venv/bin/python -m bench.measure_rate [--touches N] [--senders N] [--rate R]
                                           [--store sqlite|PATH|DSN]

Starts touchlamp's own Mosquitto (``ManagedBroker``) on a free loopback port, a relay in this
process (its own worker thread, a real store: SQLite in a temporary directory by default, or
the SQLite file or ``postgresql://`` DSN given, whose tables it fills), and ``--senders`` lamps each
paired with one receiving lamp. The lamps are ``mosquitto_pub``/``mosquitto_sub`` processes, so
they do not share the relay's interpreter. Every sender publishes its share of the touches
(QoS 1), as fast as the broker takes them or at ``--rate`` touches/s in total. The receivers'
glows are counted; the result is touches/s (= glows/s, one receiver per touch) from the first
publish to the last glow, and whether every touch arrived exactly once.

The broker's per-client queue is raised for the burst: with Mosquitto's default (1000) a burst
of thousands of touches is dropped by the broker before the relay sees it. Issue 7's benchmarks
go further (latency percentiles, several relays).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from bench.site import free_port
from touchlamp.broker.admin import BrokerAdmin
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import BrokerSettings, LimitsSettings, ListenerSettings
from touchlamp.config.relay import RelaySettings
from touchlamp.protocol import Touch, decode_glow, encode
from touchlamp.server.relay import Relay
from touchlamp.server.store import Store, open_store

_STALL_SECONDS = 10.0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touches", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--rate", type=float, help="touches/s offered in total (default: max)")
    parser.add_argument(
        "--store", default="sqlite", help="sqlite (a temporary file), a path or a DSN"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        directory = Path(name)
        broker = stack.enter_context(_broker(directory, queue=10 * args.touches))
        store = stack.enter_context(_store(args.store, directory))
        admin = stack.enter_context(broker.admin())
        bench = _Bench(broker, admin, store, directory=directory)
        print(bench.run(touches=args.touches, senders=args.senders, rate=args.rate))
        if not bench.complete:
            raise SystemExit(f"lost touches: no glow arrived for {_STALL_SECONDS:.0f} s")


@contextmanager
def _broker(directory: Path, *, queue: int) -> Iterator[ManagedBroker]:
    managed = ManagedBroker(
        BrokerSettings(
            state_dir=directory / "broker",
            listeners=[ListenerSettings(address="127.0.0.1", port=free_port())],
            limits=LimitsSettings(max_queued_messages=queue, max_queued_bytes=1024**3),
        )
    )
    managed.start()
    try:
        yield managed
    finally:
        managed.stop()


@contextmanager
def _store(which: str, directory: Path) -> Iterator[Store]:
    store = open_store(str(directory / "relay.sqlite3") if which == "sqlite" else which)
    try:
        yield store
    finally:
        store.close()


class _Bench:
    def __init__(
        self, broker: ManagedBroker, admin: BrokerAdmin, store: Store, *, directory: Path
    ) -> None:
        self._broker = broker
        self._admin = admin
        self._store = store
        self._topics = broker.topics
        self._directory = directory
        self._received: set[str] = set()
        self._duplicates = 0
        self._expected = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._processes: list[subprocess.Popen[str]] = []
        self.complete = False

    def run(self, *, touches: int, senders: int, rate: float | None) -> str:
        per_sender = touches // senders
        self._expected = per_sender * senders
        commands = [self._pair(index, per_sender) for index in range(senders)]
        broker = self._broker
        settings = RelaySettings(
            mqtt={
                "host": broker.host,
                "port": broker.port,
                "username": broker.credentials.relay_username,
                "password": broker.credentials.relay_password,
                "topic_root": broker.topics.root,
                "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 1.0,
            },
            rate_limit={"per_second": 1e9, "burst": 10**9},
            forwarding={"mutual_window_seconds": 0},
            bad_payload_log_seconds=0.0,
        )
        relay = Relay(settings=settings, store=self._store)
        relay.start()
        try:
            assert relay.wait_connected(30), "the relay did not connect"
            threading.Event().wait(1.0)  # the receivers subscribe (they print nothing until then)
            start = time.perf_counter()
            for command, lines in commands:
                self._send(command, lines, None if rate is None else rate / senders)
            self.complete = self._wait()
            elapsed = time.perf_counter() - start
        finally:
            relay.stop()
            self._close()
        offered = "as fast as possible" if rate is None else f"{rate:,.0f}/s offered"
        return (
            f"{len(self._received)}/{self._expected} touches forwarded "
            f"({self._duplicates} duplicates) in {elapsed:.2f} s: "
            f"{len(self._received) / elapsed:,.0f} touches/s = glows/s "
            f"({senders} sending lamps, {offered}, store {type(self._store).__name__})"
        )

    def _pair(self, index: int, per_sender: int) -> tuple[list[str], Path]:
        """A sender and a receiver lamp, paired; the receiver starts listening at once."""
        store = self._store
        sender_id, receiver_id = f"send-{index}", f"recv-{index}"
        for lamp_id in (sender_id, receiver_id):
            store.add_lamp(lamp_id, name=lamp_id, color="#ffffff", now_ms=0)
        store.create_group([sender_id, receiver_id], name="bench", group_id=f"g-{index}")
        receiver = self._start(
            [*self._login(receiver_id), "-t", self._topics.glow(receiver_id)],
            tool="mosquitto_sub",
            stdout=subprocess.PIPE,
        )
        assert receiver.stdout is not None
        threading.Thread(target=self._count, args=(receiver.stdout,), daemon=True).start()
        lines = self._directory / f"{sender_id}.touches"
        lines.write_text(
            "".join(
                encode(Touch(seq=seq, stream=1, color="#ffffff", ts=1)).decode() + "\n"
                for seq in range(per_sender)
            )
        )
        command = [*self._login(sender_id), "-M", "1000", "-l", "-t", self._topics.touch(sender_id)]
        return command, lines

    def _login(self, lamp_id: str) -> list[str]:
        broker = self._broker
        return [
            "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-q", "1",
            "-i", lamp_id, "-u", lamp_id, "-P", self._admin.add_lamp(lamp_id),
        ]  # fmt: skip

    def _start(
        self,
        args: list[str],
        *,
        tool: str,
        stdin: int | IO[str] | None = None,
        stdout: int | None = None,
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen([tool, *args], text=True, stdin=stdin, stdout=stdout)
        self._processes.append(process)
        return process

    def _send(self, command: list[str], lines: Path, per_second: float | None) -> None:
        if per_second is None:
            with lines.open() as stdin:
                self._start(command, tool="mosquitto_pub", stdin=stdin)
            return
        process = self._start(command, tool="mosquitto_pub", stdin=subprocess.PIPE)
        threading.Thread(target=_paced, args=(process, lines, per_second), daemon=True).start()

    def _count(self, lines: IO[str]) -> None:
        for line in lines:
            glow = decode_glow("glow", line.strip().encode())
            with self._lock:
                if glow.touch in self._received:
                    self._duplicates += 1
                self._received.add(glow.touch)
                if len(self._received) == self._expected:
                    self._done.set()

    def _wait(self) -> bool:
        """Wait for every glow as long as glows keep coming; False after a stall."""
        last = -1
        while not self._done.wait(timeout=_STALL_SECONDS):
            with self._lock:
                now = len(self._received)
            if now == last:
                return False
            last = now
        return True

    def _close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
            process.wait(30)
            if process.stdout is not None:
                process.stdout.close()


def _paced(process: subprocess.Popen[str], lines: Path, per_second: float) -> None:
    """Feed ``lines`` to ``process`` at ``per_second`` (in ~10 ms batches), then close stdin."""
    assert process.stdin is not None
    start = time.perf_counter()
    pause = threading.Event()
    with process.stdin as stdin:
        for index, line in enumerate(lines.read_text().splitlines(keepends=True)):
            wait = start + index / per_second - time.perf_counter()
            if wait > 0.01:
                stdin.flush()
                pause.wait(wait)
            stdin.write(line)


if __name__ == "__main__":
    main()
