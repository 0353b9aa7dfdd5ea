"""The fault scenarios' own parts (tests/faults/world.py) under the conditions of a busy machine."""

from __future__ import annotations

import socket

from tests.faults.world import FaultWorld


def test_a_restarted_relay_process_gets_a_metrics_port_when_its_old_one_was_taken(
    world: FaultWorld,
) -> None:
    """Killed and restarted, a relay must not need the metrics port it had: another process on
    the machine may have been given it meanwhile (the ports are the kernel's ephemeral ones)."""
    relay = world.relay_process()
    old = relay.metrics_port
    relay.kill9()
    with socket.create_server(("127.0.0.1", old)):  # taken while the relay was down
        relay.start()
        assert relay.metrics_port != old
        assert relay.metrics()["touchlamp_relay_connected"] == 1


def test_a_relay_process_whose_metrics_port_is_taken_at_its_first_start_gets_another(
    world: FaultWorld,
) -> None:
    """free_port() only finds a port free at that moment; another process may bind it before
    the relay does. The start moves to another port, and the lost race leaves no error behind
    in the relay's log (the guard over child logs would fail the test)."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = int(taken.getsockname()[1])
        relay = world.relay_process(metrics_port=port)
        assert relay.metrics_port != port
        assert relay.metrics()["touchlamp_relay_connected"] == 1
