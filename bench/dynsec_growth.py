"""What creating lamps online costs as a broker grows: ``python -m bench.dynsec_growth``.

    python -m bench.dynsec_growth [--clients 10000] [--per-message 100] [--roles]

Starts the project's Mosquitto in a temporary directory and creates ``--clients`` dynamic-security
clients (bound to their client ids, as lamps are; with ``--roles`` each gets its own role too,
exactly as ``BrokerAdmin.add_lamps`` does), ``--per-message`` commands to a message, printing the
seconds per 1,000 clients as the broker fills, then the file's size and one more client's time.
Mosquitto 2.0.11 saves its whole JSON after every command, so the cost per client grows with the
clients already there (BENCHMARKS.md, "the fleet at 1,000 / 3,000 / 10,000 lamps").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.site import free_port
from touchlamp.broker.acl import lamp_role
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import BrokerSettings, ListenerSettings

__all__ = ["main"]

_REPORT_EVERY = 1000


def _commands(index: int, *, roles: bool, broker: ManagedBroker) -> list[dict[str, object]]:
    lamp_id = f"lamp-{index:06d}"
    client: dict[str, object] = {
        "command": "createClient",
        "username": lamp_id,
        "password": f"growth-{index}",
        "clientid": lamp_id,
    }
    if not roles:
        return [client]
    role = lamp_role(broker.topics, lamp_id)
    client["roles"] = [{"rolename": role.name}]
    return [{"command": "createRole", **role.to_json()}, client]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dynsec_growth", description=__doc__)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--roles", action="store_true", help="a role per client, as lamps have")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="touchlamp-dynsec-") as scratch:
        broker = ManagedBroker(
            BrokerSettings(
                state_dir=Path(scratch) / "broker",
                listeners=[ListenerSettings(address="127.0.0.1", port=free_port())],
            ),
            stop_with_parent=True,
        )
        broker.start()
        try:
            with broker.admin(timeout=600.0) as admin:
                started = last = time.monotonic()
                for first in range(0, args.clients, args.per_message):
                    last_index = min(args.clients, first + args.per_message)
                    admin.run_commands(
                        [
                            command
                            for index in range(first, last_index)
                            for command in _commands(index, roles=args.roles, broker=broker)
                        ]
                    )
                    if last_index % _REPORT_EVERY == 0:
                        now = time.monotonic()
                        print(
                            f"{last_index:>7,} clients: {now - last:6.2f} s for the last "
                            f"{_REPORT_EVERY:,}, {now - started:7.1f} s in all",
                            flush=True,
                        )
                        last = now
                size = broker.layout.dynsec_file.stat().st_size
                one = time.monotonic()
                admin.run_commands(_commands(args.clients, roles=args.roles, broker=broker))
                print(
                    f"dynamic-security.json {size / 1e6:.1f} MB; one more client "
                    f"{(time.monotonic() - one) * 1000:.0f} ms"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
