"""Argument types shared by the commands of more than one module (argparse ``type=`` callables).

A bad value becomes argparse's own usage error (exit 2) with the message given here.
"""

from __future__ import annotations

import argparse

__all__ = ["port_number"]


def port_number(text: str) -> int:
    """A TCP port, ``0`` meaning "pick a free one"."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535; 0 picks a free one)")
    return port
