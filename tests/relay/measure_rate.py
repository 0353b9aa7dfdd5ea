"""How many touches per second one relay forwards with zero loss (a quick measurement, not a test).

    .venv/bin/python -m tests.relay.measure_rate [--touches 20000] [--senders 4] [--store PATH|DSN]

Starts a Mosquitto on a free loopback port, a relay in this process (its own worker thread, a
real store: SQLite in a temporary directory unless ``--store`` names another), ``--senders``
lamps each paired with one receiving lamp (``mosquitto_pub``/``mosquitto_sub`` processes, so the
lamps do not share the relay's interpreter), then has every sender publish its share of
touches (QoS 1) as fast as the broker takes them. It counts the glows the receivers get and reports touches/s
from the first publish to the last glow, and checks that every touch arrived exactly once.
Issue 7's benchmarks go further (latency percentiles, several relays).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tests.device.link_support import ProvisionalBroker
from tests.relay.live import Site
from touchlamp.protocol import Topics, Touch, decode_glow, encode
from touchlamp.server.relay import Relay
from touchlamp.server.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touches", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--store", help="a SQLite path or postgresql:// DSN (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        broker = ProvisionalBroker(Path(directory) / "broker")
        broker.start()
        try:
            store = open_store(args.store or Path(directory) / "relay.sqlite3")
            try:
                measure(
                    Site(broker, store),
                    touches=args.touches,
                    senders=args.senders,
                    directory=Path(directory),
                )
            finally:
                store.close()
        finally:
            broker.stop()


def _lamp_args(site: Site, lamp_id: str, password: str) -> list[str]:
    return [
        "-h", site.broker.host, "-p", str(site.broker.port), "-V", "mqttv5",
        "-i", lamp_id, "-u", lamp_id, "-P", password, "-q", "1",
    ]  # fmt: skip


def measure(site: Site, *, touches: int, senders: int, directory: Path) -> None:
    topics = Topics(site.root)
    per_sender = touches // senders
    expected = per_sender * senders
    received: set[str] = set()
    duplicates = 0
    done = threading.Event()
    lock = threading.Lock()

    def count(lines: IO[str]) -> None:
        nonlocal duplicates
        for line in lines:
            glow = decode_glow("glow", line.strip().encode())
            with lock:
                if glow.touch in received:
                    duplicates += 1
                received.add(glow.touch)
                if len(received) == expected:
                    done.set()

    # The lamps are Mosquitto's own command-line clients in processes of their own, so they do
    # not compete with the relay for this interpreter's GIL.
    receivers: list[subprocess.Popen[str]] = []
    sender_commands: list[tuple[list[str], Path]] = []
    for index in range(senders):
        sender_id, receiver_id = f"send-{index}", f"recv-{index}"
        sender_pw, receiver_pw = site.broker.add_lamp(sender_id), site.broker.add_lamp(receiver_id)
        for lamp_id in (sender_id, receiver_id):
            site.store.add_lamp(lamp_id, name=lamp_id, color="#ffffff", now_ms=0)
        site.store.create_group([sender_id, receiver_id], name="bench", group_id=f"g-{index}")
        receiver = subprocess.Popen(
            ["mosquitto_sub", *_lamp_args(site, receiver_id, receiver_pw),
             "-t", topics.glow(receiver_id)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert receiver.stdout is not None
        threading.Thread(target=count, args=(receiver.stdout,), daemon=True).start()
        receivers.append(receiver)
        lines = directory / f"{sender_id}.touches"
        lines.write_text(
            "".join(
                encode(Touch(seq=seq, stream=1, color="#ffffff", ts=1)).decode() + "\n"
                for seq in range(per_sender)
            )
        )
        sender_commands.append(
            (
                ["mosquitto_pub", *_lamp_args(site, sender_id, sender_pw), "-M", "1000",
                 "-l", "-t", topics.touch(sender_id)],
                lines,
            )
        )  # fmt: skip

    settings = site.settings(
        rate_limit={"per_second": 1e9, "burst": 10**9}, forwarding={"mutual_window_seconds": 0}
    )
    relay = Relay(settings=settings, store=site.store)
    relay.start()
    assert relay.wait_connected(30)
    threading.Event().wait(1.0)  # let the receivers subscribe (they print nothing until then)

    start = time.perf_counter()
    sending = []
    for command, lines in sender_commands:
        with lines.open() as stdin:
            sending.append(subprocess.Popen(command, stdin=stdin))
    finished = _wait_while_progressing(done, lambda: len(received), stall=10.0)
    elapsed = time.perf_counter() - start
    for process in sending:
        process.wait(30)
    relay.stop()
    for receiver in receivers:
        receiver.terminate()
        receiver.wait(30)
        if receiver.stdout is not None:
            receiver.stdout.close()
    print(
        f"{len(received)}/{expected} touches forwarded ({duplicates} duplicates) in "
        f"{elapsed:.2f} s: {len(received) / elapsed:,.0f} touches/s = glows/s "
        f"({senders} sending lamps, store {type(site.store).__name__})"
    )
    if not finished:
        raise SystemExit("lost touches: no glow arrived for 10 s, and some are missing")


def _wait_while_progressing(
    done: threading.Event, count: Callable[[], int], *, stall: float
) -> bool:
    """Wait for ``done`` as long as ``count()`` keeps growing; False after ``stall`` s without."""
    last = -1
    while not done.wait(timeout=stall):
        now = count()
        if now == last:
            return False
        last = now
    return True


if __name__ == "__main__":
    main()
