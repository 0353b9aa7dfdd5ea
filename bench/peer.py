"""Plain paho clients in processes of their own: the baselines the benchmarks compare against.

    python -m bench.peer sink  --host H --port P --username U --password-file F --topic T
    python -m bench.peer echo  --host H --port P --username U --password-file F --root R
    python -m bench.peer lamp  --host H --port P --username U --password-file F --root R
    python -m bench.peer sniff --host H --port P --username U --password-file F --topic T1,T2

- ``sink``: subscribes to ``T`` (QoS 1) and counts touches (by lamp, stream and seq: loss and
  duplicates are counted, not guessed). It prints ``ready`` once subscribed, ``progress N`` every
  ``--every`` touches, and on SIGTERM one JSON line: received, duplicates, first and last
  ``time.monotonic()`` (``CLOCK_MONOTONIC``: the same clock in every process on the machine).
- ``echo``: a relay that does no work — no validation, no store, no rate limit. It turns each
  touch on ``{R}/lamp/+/touch`` into a glow for the other lamp of a pair (``--pairs A:B,…``).
  The floor for a relay's cost at the same load.
- ``lamp``: the least a lamp can be: connect, publish a retained ``online`` (with ``offline`` as
  last will), subscribe to its glow and group topics, then wait. The floor for a lamp's footprint.
- ``sniff``: subscribes to the comma-separated ``--topic`` filters and notes when each message
  arrives (``time.monotonic()``). It speaks only when asked, so that the process asking (the
  latency benchmark's, which also runs two lamps) has nothing to do while a touch is on its way:
  ``report N`` on its stdin waits until it holds at least ``N`` messages (10 s at most), then
  prints them as one JSON line of ``[topic, time]`` pairs and forgets them. It ends when its stdin
  closes, so it never outlives the benchmark.

Every role ends when its stdin closes (its parent ended, or died), as well as on SIGTERM.

Tuned as ARCHITECTURE.md ("Known traps") says: paho's inflight window lifted
(``max_inflight_messages_set(0)``), its
outgoing queue unbounded; the sink and echo ask the broker for up to 65,535 unacknowledged
messages (MQTT 5 Receive Maximum).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from touchlamp.stopping import StopSignals

__all__ = ["main"]

_RECEIVE_MAXIMUM = 65_535
_PARENT_CHECK_SECONDS = 0.5  # how often the main thread looks whether stdin closed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    parser.add_argument("role", choices=["sink", "echo", "lamp", "sniff"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--client-id")
    parser.add_argument(
        "--topic", help="sink: the topic filter to count; sniff: the filters, comma-separated"
    )
    parser.add_argument("--root", help="echo, lamp: the topic root")
    parser.add_argument("--pairs", default="", help="echo: lamp pairs A:B,C:D,…")
    parser.add_argument("--every", type=int, default=500, help="sink: progress line interval")
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=_RECEIVE_MAXIMUM,
        help="MQTT 5 Receive Maximum asked of the broker",
    )
    args = parser.parse_args(argv)
    password = args.password_file.read_text(encoding="utf-8").strip()
    # A parent stops each peer with SIGTERM as a matter of course: no line on stderr for it.
    with StopSignals(program="bench.peer", quiet=True) as stop:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=args.client_id or args.username,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(args.username, password)
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.ReceiveMaximum = args.receive_maximum
        if args.role == "sink":
            _sink(client, topic=args.topic, every=args.every)
        elif args.role == "sniff":
            return _sniff(client, args=args, topics=args.topic.split(","), connect=connect)
        elif args.role == "echo":
            _echo(client, root=args.root, pairs=args.pairs)
        else:
            _lamp(client, root=args.root, lamp_id=args.username)
        client.connect(args.host, args.port, keepalive=60, properties=connect)
        client.loop_start()
        parent_gone = _watch_stdin()
        while not (stop.wait(_PARENT_CHECK_SECONDS) or parent_gone.is_set()):
            pass
        client.disconnect()
        client.loop_stop()
    report = getattr(client, "bench_report", None)
    if callable(report):
        print(json.dumps(report()), flush=True)
    return 0


def _watch_stdin() -> threading.Event:
    """Set once stdin closes: the parent benchmark ended, or died (however), and this peer
    must not outlive it."""
    closed = threading.Event()

    def read() -> None:
        for _line in sys.stdin:
            pass
        closed.set()

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return closed


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _sink(client: mqtt.Client, *, topic: str, every: int) -> None:
    seen: set[tuple[str, int, int]] = set()
    duplicates = 0
    first_at: float | None = None
    last_at: float | None = None

    def on_connect(c: mqtt.Client, *_args: object) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(*_args: object) -> None:
        _say("ready")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        nonlocal duplicates, first_at, last_at
        now = time.monotonic()
        touch = json.loads(message.payload)
        key = (message.topic, touch["stream"], touch["seq"])
        if key in seen:
            duplicates += 1
            return
        seen.add(key)
        if first_at is None:
            first_at = now
        last_at = now
        if len(seen) % every == 0:
            _say(f"progress {len(seen)}")

    def report() -> dict[str, object]:
        return {
            "received": len(seen),
            "duplicates": duplicates,
            "first_at": first_at,
            "last_at": last_at,
        }

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.bench_report = report  # type: ignore[attr-defined]


def _sniff(
    client: mqtt.Client, *, args: argparse.Namespace, topics: list[str], connect: Properties
) -> int:
    seen: list[tuple[str, float]] = []
    changed = threading.Condition()

    def on_connect(c: mqtt.Client, *_args: object) -> None:
        c.subscribe([(topic, 1) for topic in topics])

    def on_subscribe(*_args: object) -> None:
        _say("ready")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        with changed:
            seen.append((message.topic, now))
            changed.notify_all()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=60, properties=connect)
    client.loop_start()
    try:
        for line in sys.stdin:  # until the benchmark closes it (or dies)
            command, _, count = line.partition(" ")
            if command != "report":
                continue
            wanted = int(count or 0)
            with changed:
                changed.wait_for(lambda: len(seen) >= wanted, timeout=10.0)  # noqa: B023  used at once
                report = list(seen)
                seen.clear()
            _say(json.dumps(report))
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


def _echo(client: mqtt.Client, *, root: str, pairs: str) -> None:
    peer: dict[str, str] = {}
    for pair in filter(None, pairs.split(",")):
        first, second = pair.split(":")
        peer[first], peer[second] = second, first
    prefix = f"{root}/lamp/"

    def on_connect(c: mqtt.Client, *_args: object) -> None:
        c.subscribe(f"{root}/lamp/+/touch", qos=1)

    def on_subscribe(*_args: object) -> None:
        _say("ready")

    def on_message(c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        sender = message.topic[len(prefix) :].partition("/")[0]
        touch = json.loads(message.payload)
        glow = {
            "touch": f"{sender}:{touch['stream']}:{touch['seq']}",
            "from": sender,
            "color": touch["color"],
            "mutual": False,
            "at": int(time.time() * 1000),
        }
        c.publish(f"{prefix}{peer[sender]}/glow", json.dumps(glow), qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message


def _lamp(client: mqtt.Client, *, root: str, lamp_id: str) -> None:
    availability = f"{root}/lamp/{lamp_id}/availability"
    client.will_set(availability, "offline", qos=1, retain=True)

    def on_connect(c: mqtt.Client, *_args: object) -> None:
        c.subscribe([(f"{root}/lamp/{lamp_id}/glow", 1), (f"{root}/lamp/{lamp_id}/group", 1)])
        c.publish(availability, "online", qos=1, retain=True)

    client.on_connect = on_connect


if __name__ == "__main__":
    raise SystemExit(main())
