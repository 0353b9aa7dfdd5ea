"""Free loopback ports for what the tests start (never 1883, never the machine's services)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_listening_port", "free_port"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (whoever binds it re-checks before use)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def free_listening_port() -> int:
    """A free port below the kernel's range for outgoing connections, for a server that binds
    it later: a port from ``free_port`` may meanwhile become the source port of a connection
    (seen: a restarted relay's metrics port taken, "Address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(max(1024, low // 2), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
