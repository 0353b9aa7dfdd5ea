"""Whether this machine has a network at all: a default route, from the kernel's own tables.

"Not connected" has two very different causes for a lamp's owner: the broker is away (the
internet, the host) or the lamp has no network at all — a lamp given as a gift, in a home whose
Wi-Fi it does not know, with its Wi-Fi set-up hotspot open (DEPLOY.md "Give a lamp"). The lamp
shows the second with its own look (``looks.no_network``). No default route, IPv4 or IPv6, is
what "no network" means here: it is what a Pi without Wi-Fi (or serving a hotspot) has.

Read from ``/proc/net/route`` and ``/proc/net/ipv6_route``; no command is run.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["has_default_route"]

_ROUTE = Path("/proc/net/route")
_ROUTE6 = Path("/proc/net/ipv6_route")
_RTF_UP = 0x1
_LOOPBACK = "lo"


def has_default_route(route: Path = _ROUTE, route6: Path = _ROUTE6) -> bool:
    """Whether either table has a default route that is up (not through loopback).

    A machine without the tables (not Linux) counts as having a network: the look is only a
    hint, never a reason to stop.
    """
    try:
        v4 = route.read_text(encoding="ascii")
    except OSError:
        return True
    try:
        v6 = route6.read_text(encoding="ascii")
    except OSError:
        v6 = ""
    return _default_v4(v4) or _default_v6(v6)


def _default_v4(table: str) -> bool:
    # Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT, in hex.
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[0] == _LOOPBACK:
            continue
        destination, flags, mask = fields[1], fields[3], fields[7]
        try:
            up = int(flags, 16) & _RTF_UP
        except ValueError:
            continue
        if destination == "00000000" and mask == "00000000" and up:
            return True
    return False


def _default_v6(table: str) -> bool:
    # dest dest_len src src_len next_hop metric refcnt use flags iface, in hex.
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[9] == _LOOPBACK:
            continue
        if fields[0] == "0" * 32 and fields[1] == "00":
            try:
                if int(fields[8], 16) & _RTF_UP:
                    return True
            except ValueError:
                continue
    return False
